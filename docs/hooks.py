"""MkDocs hooks: pages that quote the README, the changelog and the bad-input test table.

So the docs cannot drift from them, a page may hold these markers, replaced at build time:

- `<!-- readme: Section title -->`: that `## Section title` of README.md, heading excluded;
- `<!-- file: path -->`: the whole file (path relative to the repository root);
- `<!-- docstring-table: path -->`: the Markdown table in the module docstring of a Python file.

`on_config` also fails the build if a public module of `keras_rollback` has no `:::` block in
`docs/api/`, so every module gets a reference page. Not public: private modules (`_name`),
`compat` (the private Keras access), and the files of one backend (`torch_*`, `jax_*`,
`tensorflow_*`), which implement a public class or function of the module beside them.
"""

import ast
import pathlib
import re

from mkdocs.exceptions import PluginError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOT_PUBLIC = ("version.py", "compat.py")
BACKEND_PREFIXES = ("torch_", "jax_", "tensorflow_")
_MARKER = re.compile(r"<!-- (readme|file|docstring-table): (.+?) -->")


def _readme_section(title):
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if match is None:
        raise PluginError(f"README.md has no section '## {title}' (quoted by the docs).")
    return match.group(1).strip()


def _docstring_table(path):
    docstring = ast.get_docstring(ast.parse((REPO_ROOT / path).read_text())) or ""
    rows = [line for line in docstring.splitlines() if line.startswith("|")]
    if not rows:
        raise PluginError(
            f"{path}: the module docstring has no Markdown table (quoted by the docs)."
        )
    return "\n".join(rows)


def _expand(match):
    kind, argument = match.group(1), match.group(2).strip()
    if kind == "readme":
        return _readme_section(argument)
    if kind == "file":
        return (REPO_ROOT / argument).read_text()
    return _docstring_table(argument)


def on_page_markdown(markdown, page, config, files):
    return _MARKER.sub(_expand, markdown)


def on_config(config):
    documented = set()
    for page in (REPO_ROOT / "docs" / "api").glob("*.md"):
        documented.update(re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.M))
    missing = []
    for path in sorted((REPO_ROOT / "keras_rollback").rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        if any(part.startswith("_") for part in parts) or path.name in NOT_PUBLIC:
            continue
        if path.name.startswith(BACKEND_PREFIXES):
            continue
        if ".".join(parts) not in documented:
            missing.append(".".join(parts))
    if missing:
        raise PluginError(
            f"Modules without an API reference block in docs/api/: {missing}. Add a "
            "`::: module.name` line for each to the page of its package in docs/api/."
        )
    return config
