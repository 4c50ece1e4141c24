"""The house's import rules, checked on the source with `ast` (no import is executed):

- no module imports a private name (`_x`) from another module;
- no import cycle between modules, counting imports inside functions (lazy ones) too;
- every package opens with a docstring that says what lives there;
- the three folders install as one package, `edgepipe` (pyproject's package-dir), and every import uses
  those installed names (an import of a bare `pipeline`/`targets`/`calibration` would shadow-break).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> installed package name (pyproject.toml [tool.setuptools] package-dir)
FOLDERS = {"pipeline": "edgepipe", "targets": "edgepipe.targets", "calibration": "edgepipe.calibration"}
PACKAGES = ("edgepipe",)


def _installed_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join((FOLDERS[parts[0]], *parts[1:]))


def _modules() -> dict[str, Path]:
    out = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            out[_installed_name(path)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of a project module in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, None, node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return out


def _owner(module: str) -> str | None:
    """The project module an import resolves to (a package's submodule, else the longest known prefix)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for mod, _, _ in _imports(name, path):
            target = _owner(mod)
            if target and target != name:
                graph[name].add(target)
    return graph


def private_imports() -> list[str]:
    bad = []
    for name, path in MODULES.items():
        for mod, imported, line in _imports(name, path):
            if imported and imported.startswith("_") and not imported.startswith("__") and _owner(mod) != name:
                bad.append(f"{name}:{line} imports {imported} from {mod}")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_private_name_is_imported_across_modules():
    assert private_imports() == []


def test_no_import_cycles_including_lazy_imports():
    assert cycles(_graph()) == []


def test_the_checks_catch_what_they_claim(tmp_path, monkeypatch):
    """The two checks above are not vacuous: a planted private import and a planted cycle are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from edgepipe.core.errors import _hidden\n\ndef f():\n    import edgepipe.fake_b\n")
    b.write_text("import edgepipe.fake_a\n")
    monkeypatch.setitem(MODULES, "edgepipe.fake_a", a)
    monkeypatch.setitem(MODULES, "edgepipe.fake_b", b)
    assert any("imports _hidden from edgepipe.core.errors" in x for x in private_imports())
    assert ["edgepipe.fake_a", "edgepipe.fake_b"] in cycles(_graph())


@pytest.mark.parametrize("package", sorted(n for n, p in MODULES.items() if p.name == "__init__.py"))
def test_every_package_says_what_lives_there(package):
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text(encoding="utf-8")))
    assert doc and len(doc) > 40 and "TODO" not in doc, f"{package}: a docstring saying what lives there"


def test_every_package_folder_is_installed_under_edgepipe():
    """pyproject lists the packages by hand (package-dir maps the folders): a new sub-package must be listed."""
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert tool["package-dir"] == {v: k for k, v in FOLDERS.items()}
    folders = {_installed_name(p) for f in FOLDERS for p in (ROOT / f).rglob("__init__.py")}
    assert set(tool["packages"]) == folders


@pytest.mark.parametrize("folder", ["pipeline", "targets", "calibration", "tests", "benchmarks"])
def test_no_code_imports_the_bare_folder_names(folder):
    """Installed, only `edgepipe` exists: `import pipeline` / `from targets import` would break (or pick up a
    user's own pipeline.py). The on-board runner is standalone (stdlib + numpy) and imports neither."""
    bare = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bare += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in FOLDERS]
    assert bare == []
