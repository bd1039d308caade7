"""`pytest_test`: one `py_test` per test file, run by pytest on the selected Keras backend."""

def pytest_test(name, srcs, deps = [], args = [], **kwargs):
    """A `py_test` that runs the test file `srcs[0]` with pytest.

    The Keras backend comes from `--define=keras_backend=tensorflow|jax|torch` (default
    tensorflow) through the test's `env`, so one `bazel test //...` runs every file once on
    one backend.

    Args:
      name: the target name, the test file's stem.
      srcs: the test file (one).
      deps: the project modules and test helpers the file imports.
      args: extra pytest arguments.
      **kwargs: passed to `py_test` (size, tags, data, ...).
    """
    native.py_test(
        name = name,
        srcs = srcs + ["//tools/bazel:pytest_main.py"],
        main = "//tools/bazel:pytest_main.py",
        args = ["$(location %s)" % srcs[0]] + args,
        deps = deps,
        env = select({
            "//tools/bazel:backend_jax": {"KERAS_BACKEND": "jax"},
            "//tools/bazel:backend_torch": {"KERAS_BACKEND": "torch"},
            "//conditions:default": {"KERAS_BACKEND": "tensorflow"},
        }),
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )
