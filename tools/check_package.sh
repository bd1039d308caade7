#!/usr/bin/env bash
# Builds the sdist and the wheel (python -m build) and installs each into a fresh virtual
# environment, then runs tools/smoke_test_package.py there from outside the checkout.
# The venvs see the system site-packages (--system-site-packages) so TensorFlow, JAX and
# torch are not downloaded again; keras-rollback itself comes from the built artifact (the
# venv's own site-packages come first on sys.path, and the smoke test checks where the
# package was imported from). Usage: bash tools/check_package.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
dist="${1:-${work}/dist}"
rm -rf "${dist}"

# --no-isolation: build with the installed setuptools (no download of the build backend).
python -m build --no-isolation --outdir "${dist}" . >"${work}/build.log" 2>&1 || {
  cat "${work}/build.log"; exit 1; }
wheel="$(ls "${dist}"/*.whl)"
sdist="$(ls "${dist}"/*.tar.gz)"
echo "built $(basename "${sdist}") and $(basename "${wheel}")"

# The wheel holds the library only: no tests, experiments or BUILD files.
python - "${wheel}" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
stray = [n for n in names if not n.startswith(("keras_rollback/", "keras_rollback-"))
         or n.endswith("/BUILD")]
assert not stray, f"unexpected files in the wheel: {stray}"
assert "keras_rollback/metrics/ranking.py" in names and "keras_rollback/version.py" in names
print(f"wheel contents ok: {len(names)} files")
PY

for artifact in "${wheel}" "${sdist}"; do
  venv="${work}/venv-$(basename "${artifact}")"
  python -m venv --system-site-packages "${venv}"
  # --no-build-isolation: the sdist builds with the setuptools the venv sees, offline.
  "${venv}/bin/python" -m pip install -q --no-build-isolation "${artifact}"
  (cd "${work}" && "${venv}/bin/python" "${repo}/tools/smoke_test_package.py")
  echo "ok: $(basename "${artifact}") installs into a fresh venv and passes the smoke test"
done
