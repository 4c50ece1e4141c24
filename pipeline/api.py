"""The Python API: `import edgepipe` (this package installed under that name).

    import edgepipe
    report = edgepipe.run("pipeline.yaml")                          # a file, a dict, or a PipelineConfig
    report = edgepipe.run(cfg_dict, model=my_keras_model)           # an in-memory keras.Model
    report.exit_code, report.rows[1].accuracy["top1"], report.path  # typed rows, as in report.json
    edgepipe.validate("model.tflite", data="images/")               # any .tflite / .xml / .onnx
    edgepipe.bench("model.tflite", data="images/")
    edgepipe.list_targets()                                         # the registry, with what this host has

Every function raises the typed errors of `edgepipe.core.errors` (each with `.exit_code`) for bad input,
exactly as the CLI reports them; nothing here imports a toolkit until a function runs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepipe.core.errors import ConfigError
from edgepipe.reports.rows import ReportRow


@dataclass(frozen=True)
class Report:
    """A run's report: the same content as its report.json, with typed rows."""

    exit_code: int
    rows: tuple[ReportRow, ...]
    path: Path  # the output directory (report.json, report.html, artifacts/)
    data: dict  # report.json as a dict

    def row(self, artifact: str) -> ReportRow:
        for r in self.rows:
            if r.artifact == artifact:
                return r
        raise KeyError(f"expected an artifact of this run, one of {[r.artifact for r in self.rows]}. "
                       f"Received: {artifact!r}")

    @classmethod
    def from_json(cls, report: dict) -> Report:
        return cls(report["exit_code"], tuple(ReportRow.from_json(r) for r in report["artifacts"]),
                   Path(report.get("output") or "."), report)


def _config(config, output):
    from edgepipe.config.schema import PipelineConfig, example_config_path, load_config, parse_config

    if isinstance(config, PipelineConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = parse_config(config, base=Path.cwd(), source="config dict")
    elif isinstance(config, (str, Path)) and str(config).startswith("example:"):
        cfg = load_config(example_config_path(str(config).removeprefix("example:")))
    elif isinstance(config, (str, Path)):
        cfg = load_config(config)
    else:
        raise ConfigError("edgepipe.run: expected a pipeline.yaml path, 'example:NAME', a dict or a PipelineConfig. "
                          f"Received: {type(config).__name__}")
    if output is not None:
        cfg = parse_config({**cfg.model_dump(mode="json"), "output": str(Path(output).resolve())}, source="output")
    return cfg


def _model_path(cfg, model, keep: Path) -> Path:
    """The model file to run: `model` (a path, or a keras.Model saved once under `keep`), else the config's."""
    if model is None:
        from edgepipe.examples.models import resolve_model

        return resolve_model(cfg)
    if isinstance(model, (str, Path)):
        return Path(model)
    if hasattr(model, "save") and hasattr(model, "inputs"):  # a keras.Model, saved as a .keras file
        keep.mkdir(parents=True, exist_ok=True)
        path = keep / "model.keras"
        model.save(path)
        return path
    raise ConfigError("edgepipe.run: model: expected a keras.Model or a path to a .keras file or SavedModel "
                      f"directory. Received: {type(model).__name__}")


def run(config: Any = "example:elpv-xception", model: Any = None, *, output: str | Path | None = None,
        wait: bool = False) -> Report:
    """Run the pipeline: `config` is a pipeline.yaml path, `'example:NAME'`, a dict (relative paths resolve
    against the working directory) or a PipelineConfig; `model` overrides the config's model (a keras.Model
    or a path). Returns the report (also written to `<output>/report.json`)."""
    from edgepipe.engine.orchestrate import run_pipeline

    cfg = _config(config, output)
    with tempfile.TemporaryDirectory(prefix="edgepipe-model-") as tmp:
        report = run_pipeline(cfg, _model_path(cfg, model, Path(tmp)), wait=wait)
    return Report.from_json({**report, "output": str(cfg.output)})


def validate(artifact: str | Path, data: str | Path, **options) -> dict:
    """Accuracy of any .tflite / OpenVINO .xml / .onnx artifact on labeled images (`edgepipe validate`);
    options as that command's (labels, preprocess, size, reference, threads, limit, max_top1_drop, ...)."""
    from edgepipe.engine.standalone import validate as standalone_validate

    return standalone_validate(Path(artifact), str(data), **options)


def bench(artifact: str | Path, data: str | Path | None = None, **options) -> dict:
    """Latency of any artifact on this host (`edgepipe bench`); options as that command's."""
    from edgepipe.engine.standalone import bench as standalone_bench

    return standalone_bench(Path(artifact), None if data is None else str(data), **options)


def list_targets() -> list[dict]:
    """Every deployment target with what it needs and whether this host has it (`edgepipe targets --json`)."""
    from edgepipe import targets

    return [info.as_dict() for info in targets.REGISTRY.values()]
