"""edgepipe: trained Keras Xception -> validated edge artifacts.

The house, bottom to top (a package may import the ones listed before it, never after):

    core/         errors, hashing, versions, typed artifacts, the stage cache, labels, progress, JSON I/O
    formats/      one place per artifact format: sniffing, structural checks, host runners, runtimes
    stages/       conversions only: Keras -> SavedModel -> TFLite FP32, OpenVINO IR FP32, ONNX FP32
    quantize/     recipes, one module per quantizer (capability + translation), equalization, budgets
    diagnostics/  per-layer quantization error, one module per backend
    validators/   accuracy, parity, latency, per-layer, cross-quantizer, gates (a list behind one protocol)
    config/       pipeline.yaml's strict schema (imports targets' registry and quantize.recipes lazily)
    reports/      the typed report row, one number formatter, terminal / HTML / model-card renderers
    engine/       one run: context, FP32 reference, per-target rows, probe, fan-out, output directory
    executors/    where tasks run: local (the one serial loop), a process pool, Ray
    boards/       bundles, signatures, archives, boards over SSH, ship, on-board bench and runner
    sweeps/       models x recipes x targets on an executor, and the leaderboard
    examples/     the built-in examples' configs and models
    cli/          the `edgepipe` command (imports everything, lazily)

Deployment targets live in the top-level `targets/` package (a registry plus one module per target),
data in `calibration/`. Heavy toolkits (TensorFlow, OpenVINO, NNCF, ONNX) are imported lazily inside
the functions that need them, so importing this package and `edgepipe --help` stay fast.

Installed, this folder is the package `edgepipe` (targets/ is `edgepipe.targets`, calibration/ is
`edgepipe.calibration`); the Python API is `edgepipe.run / validate / bench / targets()` (api.py).
"""

__version__ = "0.1.0"

# The toolkits' usage reporting (OpenVINO, NNCF, MLflow, Ray) is off in edgepipe's processes: it forks the
# process for every OpenVINO event, and edgepipe runs offline (core/telemetry.py; EDGEPIPE_TOOLKIT_TELEMETRY=1).
from edgepipe.core.telemetry import quiet_toolkits as _quiet_toolkits  # noqa: E402

_quiet_toolkits()

# The Python API (pipeline/api.py), imported on first use so `import edgepipe` stays light.
API = ("run", "validate", "bench", "list_targets", "Report")


def __getattr__(name: str):
    import importlib

    if name in API:
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    if name in ("targets", "calibration"):  # the registry sub-package; `edgepipe.targets()` lists the targets
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
