"""The documentation stays short where it must, and names only what exists.

README.md is the page a newcomer reads first: at most 250 lines, with a minimal pipeline.yaml that
the schema accepts. ARCHITECTURE.md and the README.md beside each package name modules, tests and
scripts by path: a path written in backticks that no longer exists (a module moved or renamed)
fails here, naming the document and the path. Placeholders (`targets/<name>.py`, `DIR`), globs that
match something, and paths under a run's output directory are not repository paths and are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOP_DIRS = ("pipeline", "targets", "calibration", "tests", "benchmarks", "examples", ".ci")
TOP_FILES = ("ARCHITECTURE.md", "tox.ini", "pyproject.toml")
# the documents issue 14 asks for: each must exist
REQUIRED = ("README.md", "ARCHITECTURE.md", "targets/README.md", "tests/README.md", "benchmarks/README.md",
            "pipeline/quantize/README.md", "pipeline/validators/README.md", "pipeline/boards/README.md",
            "pipeline/sweeps/README.md", "pipeline/engine/README.md")

FENCE = re.compile(r"^\s*```")
SPAN = re.compile(r"`([^`\n]+)`")
_TOPS = "|".join(re.escape(d) for d in TOP_DIRS)
_FILES = "|".join(re.escape(f) for f in TOP_FILES)
REPO_PATH = re.compile(r"(?<![\w./~$-])((?:" + _TOPS + r")/[^\s`'\"(),;]*)")
TOP_FILE = re.compile(r"(?<![\w./~$-])(" + _FILES + r")(?![\w.])")
BARE_PY = re.compile(r"(?<![\w./~$-])([a-z_][a-z0-9_]*\.py)(?![\w])")
PY_MODULE = re.compile(r"python3? -m ((?:pipeline|targets|calibration|tests)(?:\.\w+)+)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
PLACEHOLDER = re.compile(r"[<>{}$…]|\.\.\.|(^|/)[A-Z][A-Z0-9_]*(/|$)")


def documents() -> list[Path]:
    docs = [ROOT / "README.md", ROOT / "ARCHITECTURE.md"]
    for top in TOP_DIRS:  # a README beside a package, at most two levels down (never a run's output)
        docs += sorted((ROOT / top).glob("README.md")) + sorted((ROOT / top).glob("*/README.md"))
    return [d for d in docs if d.is_file()]


def split_fences(text: str) -> tuple[str, str]:
    """(prose, code): the text outside and inside fenced code blocks."""
    prose, code, inside = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    return "\n".join(prose), "\n".join(code)


def backticked(text: str) -> list[str]:
    """Everything written in backticks: inline spans of the prose, and whole fenced blocks."""
    prose, code = split_fences(text)
    return SPAN.findall(prose) + code.splitlines()


def clean(path: str) -> str:
    path = path.rstrip(".:,")
    path = path.split("::")[0].split("[")[0]  # pytest ids: tests/test_x.py::test_y[param]
    head, sep, _ = path.partition(":")  # pipeline/engine/target.py:publish
    return head if sep and head.endswith(".py") else path


def repo_paths(text: str) -> set[str]:
    found = set()
    for span in backticked(text):
        for raw in REPO_PATH.findall(span) + TOP_FILE.findall(span):
            path = clean(raw)
            if path and not PLACEHOLDER.search(path):
                found.add(path)
    return found


def exists(path: str) -> bool:
    return any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    prose, _ = split_fences(doc.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in prose.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


DOCS = documents()
IDS = [str(d.relative_to(ROOT)) for d in DOCS]


def test_the_documents_exist():
    missing = [d for d in REQUIRED if not (ROOT / d).is_file()]
    assert not missing, f"expected these documents. Missing: {missing}"


def test_readme_is_at_most_250_lines():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= 250, f"README.md: expected at most 250 lines. Received: {n}; move details beside what they describe"


def test_the_readme_example_config_is_valid(tmp_path):
    from edgepipe.config.schema import parse_config

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Your own model", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    assert len(block.strip().splitlines()) <= 10, "the 'your own model' example: expected at most ten lines"
    cfg = parse_config(yaml.safe_load(block), base=tmp_path, source="README example")
    assert cfg.model.path == tmp_path / "my_model.keras"
    assert [t.name for t in cfg.targets] and all(t.name for t in cfg.targets)


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_backticked_repository_path_exists(doc):
    text = doc.read_text(encoding="utf-8")
    paths = repo_paths(text)
    missing = sorted(p for p in paths if not exists(p))
    assert not missing, f"{doc.relative_to(ROOT)}: expected existing repository paths. Received: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_backticked_module_file_exists(doc):
    """Bare file names (`latency_child.py`) and `python -m` modules name real files."""
    text = doc.read_text(encoding="utf-8")
    names = {n for span in backticked(text) for n in BARE_PY.findall(span)}
    files = {p.name for top in TOP_DIRS for p in (ROOT / top).rglob("*.py")}
    modules = {m for span in backticked(text) for m in PY_MODULE.findall(span)}
    missing = sorted(n for n in names if n not in files)
    missing += sorted(m for m in modules if not (ROOT / (m.replace(".", "/") + ".py")).is_file()
                      and not (ROOT / m.replace(".", "/") / "__init__.py").is_file())
    assert not missing, f"{doc.relative_to(ROOT)}: expected existing modules. Received: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_relative_link_resolves(doc):
    prose, _ = split_fences(doc.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(prose):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: expected links to existing files and headings. Received: {broken}"


def test_the_path_finder_finds_paths_and_skips_placeholders():
    text = ("See `pipeline/engine/target.py:publish`, `tests/test_probe.py::test_x[truncated]`, "
            "`targets/<name>.py`, `python benchmarks/bench_sweep.py --work DIR`, `edgepipe-out/artifacts/x`, "
            "`pipeline/FOO/bar.py`, `~/.cache/edgepipe/examples`.\n```sh\npython examples/x.yaml\n```\n")
    assert repo_paths(text) == {"pipeline/engine/target.py", "tests/test_probe.py", "benchmarks/bench_sweep.py",
                                "examples/x.yaml"}
    assert slug("Standalone commands: `edgepipe validate`, `edgepipe bench`") == \
        "standalone-commands-edgepipe-validate-edgepipe-bench"
