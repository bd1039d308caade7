"""Imports every module of the installed keras_rollback (and, from a checkout, experiments).

Run in an environment installed as a user installs (`pip install .`, no extras), from outside
the checkout for the library: a module that imports an undeclared package fails here with
`ModuleNotFoundError` naming it. Modules that exist for one Keras backend (`torch_*`,
`jax_*`, `tensorflow_*` files) are imported only where that backend's framework is installed:
a TensorFlow user has no torch. Exits non-zero listing every module that failed.

    python tools/import_every_module.py keras_rollback [experiments]
"""

import importlib
import importlib.util
import pkgutil
import sys
import traceback

# Backend-specific modules and the framework each needs (Keras' own naming: torch_sgd.py).
BACKEND_PREFIXES = {"torch_": "torch", "jax_": "jax", "tensorflow_": "tensorflow"}


def module_names(package_name):
    package = importlib.import_module(package_name)
    yield package_name
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
        yield info.name


def needed_framework(module_name):
    leaf = module_name.rsplit(".", 1)[-1].lstrip("_")
    for prefix, framework in BACKEND_PREFIXES.items():
        if leaf.startswith(prefix):
            return framework
    return None


def main(packages):
    failed, imported, skipped = [], 0, []
    for package_name in packages:
        for name in module_names(package_name):
            framework = needed_framework(name)
            if framework and importlib.util.find_spec(framework) is None:
                skipped.append(f"{name} (needs {framework}, not installed)")
                continue
            try:
                importlib.import_module(name)
                imported += 1
            except Exception:
                failed.append(f"{name}:\n{traceback.format_exc(limit=3)}")
    for line in skipped:
        print(f"skipped {line}")
    print(f"imported {imported} modules of {', '.join(packages)}; {len(failed)} failed")
    if failed:
        print("\n".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["keras_rollback"]))
