"""The `edgepipe` command line (entry point `main`). Heavy toolkits are imported only inside commands;
the other command groups are in cli_inspect.py, cli_boards.py and cli_measure.py (shared parts in
cli_common.py)."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path

import typer

from pipeline.cli.common import app, fail, jsonable, stdout_console
from pipeline.core.errors import EdgepipeError


@app.command()
def run(
    config: Path | None = typer.Argument(None, help="pipeline.yaml (default: the built-in example)"),
    example: str = typer.Option("elpv-xception", help="built-in example used when no CONFIG is given"),
    output: Path | None = typer.Option(None, help="output directory (overrides the config)"),
    threads: int | None = typer.Option(None, min=1, help="inference threads (overrides the config)"),
    trust_model: bool = typer.Option(False, "--trust-model", help="allow Keras models needing safe_mode=False"),
    as_json: bool = typer.Option(False, "--json", help="print report.json on stdout"),
    wait: bool = typer.Option(False, "--wait", help="if another run holds the output directory, wait for it"),
    executor: str | None = typer.Option(None, help="where targets run: local | process[=N] | ray[=ADDRESS]"),
    mlflow: bool = typer.Option(False, "--mlflow", help="log the run to MLflow: the store $MLFLOW_TRACKING_URI "
                                "names, else ./mlruns (pip install 'edgepipe\\[mlflow]')"),
) -> None:
    """Convert, quantize, validate and gate every configured target's artifacts."""
    from pipeline.config.schema import example_config_path, load_config, parse_config

    try:
        cfg = load_config(config if config is not None else example_config_path(example))
        overrides = {k: v for k, v in {"output": output, "threads": threads, "executor": executor}.items()
                     if v is not None}
        if trust_model:
            overrides["model"] = {**cfg.model.model_dump(exclude_none=True), "trust": True}
        if overrides:
            cfg = parse_config({**cfg.model_dump(mode="json", exclude_none=False), **jsonable(overrides)},
                               source="command line")
        from pipeline.core.progress import stderr
        from pipeline.examples.models import resolve_model
        from pipeline.reports.terminal import print_summary
        from pipeline.reports.tracking import open_tracker
        from pipeline.run.orchestrate import run_pipeline

        tracker = open_tracker(mlflow)  # before the run: a missing mlflow fails now, not after it
        report = run_pipeline(cfg, resolve_model(cfg), wait=wait)
        if tracker:
            tracker.log(report, cfg.model_dump(mode="json"), config, Path(cfg.output), stderr)
    except EdgepipeError as err:
        fail(err)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (see main)
        from pipeline.core.progress import stderr

        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        stderr.print(f"[yellow]{what}[/]: completed stages are cached, unfinished ones were discarded; "
                     "rerun to resume")
        raise typer.Exit(143 if isinstance(err, Terminated) else 130) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    print_summary(report, stderr if as_json else stdout_console(), cfg.output)
    raise typer.Exit(report["exit_code"])


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="sweep.yaml: models x recipes x targets (x boards) over a base config"),
    executor: str | None = typer.Option(None, help="local | process[=N] | ray[=ADDRESS] (overrides the sweep file)"),
    output: Path | None = typer.Option(None, help="output directory (overrides the sweep file)"),
    as_json: bool = typer.Option(False, "--json", help="print sweep.json on stdout"),
) -> None:
    """Run a sweep on an executor; print the leaderboard, Pareto fronts and the best candidate per target."""
    from pipeline.sweeps.config import load_sweep

    try:
        overrides = {k: v for k, v in {"executor": executor, "output": output}.items() if v is not None}
        spec = load_sweep(config, overrides)
        from pipeline.core.progress import stderr
        from pipeline.sweeps.leaderboard import print_leaderboard
        from pipeline.sweeps.runner import run_sweep

        report = run_sweep(spec)
    except EdgepipeError as err:
        fail(err)
    except KeyboardInterrupt:
        from pipeline.core.progress import stderr

        stderr.print("[yellow]interrupted[/]: completed stages are cached; rerun to resume")
        raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    print_leaderboard(report, stderr if as_json else stdout_console())
    raise typer.Exit(report["exit_code"])


@app.command()
def examples() -> None:
    """List the built-in examples (`edgepipe run --example NAME`)."""
    from pipeline.config.schema import EXAMPLE_MODELS

    for name in EXAMPLE_MODELS:
        typer.echo(name)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: unfinished stages are discarded, the lock released, exit 143."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main() -> None:
    import os
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ log noise off stderr
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    app()


# the other command groups register on `app` when imported, after run/sweep/examples, in --help order
for _group in ("inspect", "measure", "boards"):
    importlib.import_module(f"pipeline.cli.{_group}")

if __name__ == "__main__":
    main()
