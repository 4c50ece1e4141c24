"""Experiment tracking: `edgepipe run ... --mlflow` logs a finished run to MLflow.

The store is MLflow's own `MLFLOW_TRACKING_URI` when set, else `./mlruns` (a local file store). A plain
path is a local file store; anything with a scheme (`http://`, `sqlite://`, `databricks`) is passed to
MLflow as it is. (`--mlflow` is a plain flag: Typer has no options with an optional value.)

`open_tracker(enabled)` is called before the run, so a missing package fails at once (a ConfigError naming
the extra, `pip install 'edgepipe[mlflow]'`) instead of after the run; `Tracker.log` then records one
MLflow run: the config (flattened into params, and as files), every row's metrics (`<artifact>/<metric>`,
with the row's status and busy flag as tags), report.json, report.html, the model cards and the
artifact directories. mlflow is imported only here, lazily.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from edgepipe.core.errors import ConfigError, expected_received
from edgepipe.reports.rows import ReportRow

DEFAULT_URI = "./mlruns"
EXPERIMENT = "edgepipe"  # MLFLOW_EXPERIMENT_NAME overrides it
MAX_PARAM = 500  # characters of a param value (MLflow's limit on older servers)
BATCH = 100  # params / tags / metrics per log_batch call (below every MLflow server's limits)
ROW_METRICS = {  # metric name -> (validator key, key in its result)
    "top1": ("accuracy", "top1"), "topk": ("accuracy", "top5"), "drop_points": ("accuracy", "drop_points"),
    "agreement": ("accuracy", "agreement"), "p50_ms": ("latency", "p50_ms"), "p90_ms": ("latency", "p90_ms"),
    "p99_ms": ("latency", "p99_ms"), "mean_ms": ("latency", "mean_ms"),
    "throughput_ips": ("latency", "throughput_ips"), "peak_rss_mb": ("latency", "peak_rss_mb"),
}


def tracking_uri(uri: str | None) -> str:
    """A URI with a scheme as it is; a path (relative to the working directory) as a file: URI."""
    uri = uri or DEFAULT_URI
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri) and not re.match(r"^[A-Za-z]:[\\/]", uri):
        return uri
    return Path(uri).expanduser().resolve().as_uri()


def import_mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise ConfigError(expected_received("--mlflow", "the mlflow package (pip install 'edgepipe[mlflow]')",
                                            f"ImportError: {err}")) from None
    return MlflowClient


def metric_key(name: str) -> str:
    """An artifact name as an MLflow key (letters, digits, _ - . / : only): 'keras/fp32 (reference)' ->
    'keras/fp32_reference'."""
    return re.sub(r"[^\w\-./:]+", "_", name).strip("_")


def flatten(value, prefix: str = "") -> dict[str, str]:
    """Nested config values as dotted params ('targets.0.name': 'tflite-arm')."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}"))
        return out
    text = json.dumps(value) if isinstance(value, list) else str(value)
    return {prefix: text[:MAX_PARAM]}


def row_metrics(row: ReportRow) -> dict[str, float]:
    out = {}
    for name, (group, key) in ROW_METRICS.items():
        v = (row.get(group) or {}).get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = float(v)
    for name, (group, key) in {"top1_ci95": ("accuracy", "top1_ci95"), "drop_ci95": ("accuracy", "drop_ci95_points"),
                               "p50_ci95_ms": ("latency", "p50_ci95_ms")}.items():
        pair = (row.get(group) or {}).get(key)
        if pair:
            out[f"{name}_lo"], out[f"{name}_hi"] = float(pair[0]), float(pair[1])
    if isinstance(row.size_mb, (int, float)):
        out["size_mb"] = float(row.size_mb)
    load = (row.latency or {}).get("load")
    if load:
        out["busy"] = 1.0 if load.get("busy") else 0.0
    return out


@contextmanager
def _file_store_allowed(uri: str):
    """MLflow 3 refuses a local file store unless MLFLOW_ALLOW_FILE_STORE is set: --mlflow's default is one."""
    if not uri.startswith("file:") or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


class Tracker:
    def __init__(self, uri: str | None):
        self.client_class = import_mlflow()
        self.uri = tracking_uri(uri)

    def log(self, report: dict, config: dict, config_path: Path | None = None, output: Path | None = None,
            console=None) -> str:
        """One MLflow run for a finished edgepipe run; returns its run id."""
        from mlflow.entities import Metric, Param, RunTag

        output = Path(output or config.get("output") or ".")
        rows = [ReportRow.from_json(r) for r in report.get("artifacts") or []]
        now = int(time.time() * 1000)
        metrics = [Metric(f"{metric_key(r.artifact)}/{k}", v, now, 0) for r in rows for k, v in row_metrics(r).items()]
        metrics += [Metric(k, float(report[k]), now, 0) for k in ("exit_code", "wall_seconds") if k in report]
        params = [Param(k, v) for k, v in flatten(config).items()]
        tags = [RunTag("edgepipe.exit_code", str(report.get("exit_code"))),
                RunTag("edgepipe.model_sha256", str((report.get("model") or {}).get("sha256")))]
        tags += [RunTag(f"status.{metric_key(r.artifact)}", str(r.status)) for r in rows]
        tags += [RunTag(f"busy.{metric_key(r.artifact)}", r.busy()) for r in rows if r.busy()]
        model = Path(str((report.get("model") or {}).get("path", "model"))).stem
        try:
            with _file_store_allowed(self.uri):
                client = self.client_class(tracking_uri=self.uri)
                name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
                exp = client.get_experiment_by_name(name)
                exp_id = exp.experiment_id if exp else client.create_experiment(name)
                run_id = client.create_run(exp_id, run_name=model).info.run_id
                for i in range(0, max(len(params), len(metrics), len(tags)), BATCH):
                    client.log_batch(run_id, metrics=metrics[i:i + BATCH], params=params[i:i + BATCH],
                                     tags=tags[i:i + BATCH])
                client.log_dict(run_id, config, "config/config.json")
                if config_path is not None and Path(config_path).is_file():
                    client.log_artifact(run_id, str(config_path), "config")
                for f in ("report.json", "report.html"):
                    if (output / f).is_file():
                        client.log_artifact(run_id, str(output / f))
                for d in sorted(p for p in (output / "artifacts").glob("*") if p.is_dir()):
                    if (d / "README.md").is_file():
                        client.log_artifact(run_id, str(d / "README.md"), f"model_cards/{d.name}")
                    client.log_artifacts(run_id, str(d), f"artifacts/{d.name}")
                client.set_terminated(run_id, "FINISHED")
        except ConfigError:
            raise
        except Exception as err:  # an unreachable server, a store it cannot write: say where and why
            raise ConfigError(expected_received(f"--mlflow {self.uri}", "an MLflow tracking store edgepipe can "
                                                "write to", f"{type(err).__name__}: {err}")) from None
        if console is not None:
            console.print(f"mlflow: run {run_id} in {self.uri} (experiment {name})", highlight=False)
        return run_id


def open_tracker(enabled: bool, uri: str | None = None) -> Tracker | None:
    """None when --mlflow was not given; else a Tracker for `uri`, else $MLFLOW_TRACKING_URI, else ./mlruns
    (mlflow is imported now: a missing package fails here, before the run)."""
    if not enabled:
        return None
    return Tracker(uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI)
