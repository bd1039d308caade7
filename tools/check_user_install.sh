#!/usr/bin/env bash
# Installs and runs keras-rollback as a new user does, to catch an undeclared dependency.
#
# In a copy of the checkout (as a fresh clone), in a fresh virtual environment WITHOUT the
# system site-packages (so nothing this machine has installed can hide a missing
# requirement):
#   1. the README's first command, exactly as written there (read from README.md, between
#      the `readme-command-1` markers): install, then the main job on the built-in data;
#   2. `pip install .` (no extras) and an import of every module of the installed library
#      from outside the checkout, and of every experiments module from the checkout
#      (tools/import_every_module.py).
# Fails on any error, naming a missing module when that is the cause.
# Usage: bash tools/check_user_install.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "${work}"
[[ $# -ge 1 ]] || trap 'rm -rf "${work}"' EXIT

command_1="$(awk '/<!-- readme-command-1/{found=1; next} found && /^```bash/{inside=1; next}
  inside && /^```/{exit} inside {print}' README.md)"
if [[ -z "${command_1}" ]]; then
  echo "README.md has no command between the readme-command-1 markers" >&2
  exit 1
fi

# The files a clone has: tracked ones, and new ones not ignored (so it checks a work tree too).
clone="${work}/keras-rollback"
rm -rf "${clone}" && mkdir -p "${clone}"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
  [[ -e "${path}" ]] && printf '%s\0' "${path}"
done | xargs -0 cp --parents -t "${clone}"

venv="${work}/venv"
rm -rf "${venv}"
python -m venv "${venv}"  # No --system-site-packages: only what the project declares.
export PATH="${venv}/bin:${PATH}" VIRTUAL_ENV="${venv}" PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH KERAS_BACKEND
[[ "$(command -v python)" == "${venv}/bin/python" ]] || { echo "venv not first on PATH" >&2; exit 1; }

report_missing() {  # report_missing LOG: name the modules a failed step could not import.
  grep -ho "No module named '[^']*'" "$1" | sort -u | sed 's/^/missing dependency: /' >&2 || true
}

# The command's work dir must be new, or the job would resume a finished run.
workdir="$(grep -o -- '--workdir=[^ ]*' <<<"${command_1}" | head -n 1 | cut -d= -f2)"
if [[ -n "${workdir}" && -e "${workdir}" ]]; then
  if [[ "${CI:-}" == "true" ]]; then
    rm -rf "${workdir}"
  else
    mv "${workdir}" "${workdir}.before-check-$(date +%s)"
    echo "moved the existing ${workdir} aside"
  fi
fi

echo "README command 1 (in ${clone}, fresh venv): ${command_1}"
log1="${work}/readme_command_1.log"
start=${SECONDS}
timer=()  # GNU time reports the peak resident memory of the largest process.
[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f "README command 1: exit %x, wall %e s, peak RSS %M KiB")
if ! (cd "${clone}" && "${timer[@]}" bash -c "${command_1}") >"${log1}" 2>&1; then
  tail -n 30 "${log1}" >&2
  report_missing "${log1}"
  echo "FAILED: README command 1 in a fresh virtualenv ($((SECONDS - start)) s)" >&2
  exit 1
fi
tail -n 30 "${log1}"
echo "ok: README command 1 in a fresh virtualenv ($((SECONDS - start)) s)"

log2="${work}/import_every_module.log"
if ! { python -m pip install -q "${clone}" &&
  (cd "${work}" && python "${repo}/tools/import_every_module.py" keras_rollback) &&
  (cd "${clone}" && PYTHONPATH=. python "${repo}/tools/import_every_module.py" experiments); } >"${log2}" 2>&1; then
  cat "${log2}" >&2
  report_missing "${log2}"
  echo "FAILED: pip install . (no extras), then import every module" >&2
  exit 1
fi
cat "${log2}"
echo "ok: pip install . (no extras) imports every module"
