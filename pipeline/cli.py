"""The `edgepipe` command line. Heavy toolkits are imported only inside commands."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from pipeline.errors import EXIT_BAD_INPUT, EdgepipeError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Trained Keras Xception -> validated TFLite / OpenVINO INT8 edge artifacts.")


def _fail(err: Exception) -> None:
    from pipeline.progress import stderr

    stderr.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)  # never hard-wrap messages
    raise typer.Exit(getattr(err, "exit_code", EXIT_BAD_INPUT))


@app.command()
def run(
    config: Path | None = typer.Argument(None, help="pipeline.yaml (default: the built-in example)"),
    example: str = typer.Option("elpv-xception", help="built-in example used when no CONFIG is given"),
    output: Path | None = typer.Option(None, help="output directory (overrides the config)"),
    threads: int | None = typer.Option(None, min=1, help="inference threads (overrides the config)"),
    trust_model: bool = typer.Option(False, "--trust-model", help="allow Keras models needing safe_mode=False"),
    as_json: bool = typer.Option(False, "--json", help="print report.json on stdout"),
) -> None:
    """Convert, quantize, validate and gate every configured target's artifacts."""
    from pipeline.config import example_config_path, load_config, parse_config

    try:
        cfg = load_config(config if config is not None else example_config_path(example))
        overrides = {k: v for k, v in {"output": output, "threads": threads}.items() if v is not None}
        if trust_model:
            overrides["model"] = {**cfg.model.model_dump(exclude_none=True), "trust": True}
        if overrides:
            cfg = parse_config({**cfg.model_dump(mode="json", exclude_none=False), **_json(overrides)},
                               source="command line")
        from pipeline.examples import resolve_model
        from pipeline.progress import stderr
        from pipeline.report import print_summary
        from pipeline.run import run_pipeline

        report = run_pipeline(cfg, resolve_model(cfg))
    except EdgepipeError as err:
        _fail(err)
    except KeyboardInterrupt:
        from pipeline.progress import stderr

        stderr.print("[yellow]interrupted[/]: completed stages are cached; rerun to resume")
        raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    print_summary(report, stderr if as_json else _stdout(), cfg.output)
    raise typer.Exit(report["exit_code"])


@app.command("targets")
def list_targets(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List deployment targets and whether this host can build them (imports no toolkit)."""
    import targets as registry

    rows = [t.as_dict() for t in registry.REGISTRY.values()]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    from rich.table import Table

    t = Table("target", "accepts", "precisions", "runtime", "host")
    for r in rows:
        host = "ready" if r["available"] else "missing: " + ", ".join(r["missing"])
        t.add_row(r["name"], r["accepts"], ", ".join(r["precisions"]), r["runtime"], host)
    _stdout().print(t)


@app.command("recipes")
def list_recipes(
    config: Path | None = typer.Argument(None, help="also list this pipeline.yaml's own recipes"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """List quantization recipes and which quantizers can build each (imports no toolkit)."""
    from pipeline.recipes import QUANTIZERS, describe_all

    user = {}
    if config is not None:
        from pipeline.config import load_config

        try:
            user = dict(load_config(config).quantization.recipes)
        except EdgepipeError as err:
            _fail(err)
    rows = describe_all(user)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    from rich.table import Table

    t = Table("recipe", "settings", *QUANTIZERS, "description")
    for r in rows:
        t.add_row(r["name"], r["summary"], *("yes" if r["quantizers"][q]["possible"] else "no" for q in QUANTIZERS),
                  r["description"])
    _stdout().print(t)


@app.command()
def preflight(
    model: Path = typer.Argument(..., help="an INT8 .tflite model"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Edge TPU pre-flight (no compiler needed): ops, first CPU fallback, SRAM estimate, segments."""
    from targets.edgetpu_preflight import analyze, render_table

    try:
        report = analyze(model)
    except EdgepipeError as err:
        _fail(err)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        _stdout().print(render_table(report))


@app.command()
def examples() -> None:
    """List the built-in examples (`edgepipe run --example NAME`)."""
    from pipeline.config import EXAMPLE_MODELS

    for name in EXAMPLE_MODELS:
        typer.echo(name)


def _stdout():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=160)
    return console


def _json(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def main() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ log noise off stderr
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
