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


def _standalone(fn, as_json: bool, **kw) -> None:
    from pipeline.progress import stderr

    try:
        from pipeline.standalone import render

        result = fn(**kw)
    except EdgepipeError as err:
        _fail(err)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    else:
        _stdout().print(render(result))
    if result["reasons"]:
        stderr.print("[red]gate failed:[/] " + "; ".join(result["reasons"]), highlight=False)
    raise typer.Exit(result["exit_code"])


_PRE = {
    "preprocess": typer.Option(None, help="preprocess.json (default: the one beside the artifact)"),
    "size": typer.Option(None, help="input height and width (default: the model's)"),
    "preprocessing": typer.Option(None, help="xception | unit | imagenet | raw (when there is no preprocess.json)"),
    "color": typer.Option(None, help="rgb | grayscale_to_rgb | grayscale"),
    "interpolation": typer.Option(None, help="bilinear | bicubic | nearest"),
    "threads": typer.Option(2, min=1, help="inference threads"),
}


@app.command()
def validate(
    artifact: Path = typer.Argument(..., help="a .tflite, OpenVINO IR .xml or .onnx image classifier"),
    data: str = typer.Option(..., help="folder of class sub-folders, or a CSV with path,label"),
    labels: Path | None = typer.Option(None, help="labels file, one per line (default: labels.txt beside the "
                                                  "artifact, else the data's class folders)"),
    preprocess: Path | None = _PRE["preprocess"],
    size: tuple[int, int] | None = _PRE["size"],
    preprocessing: str | None = _PRE["preprocessing"],
    color: str | None = _PRE["color"],
    interpolation: str | None = _PRE["interpolation"],
    reference: Path | None = typer.Option(None, help="another artifact to compare with (drop + CI, agreement, parity)"),
    threads: int = _PRE["threads"],
    limit: int | None = typer.Option(None, min=1, help="use at most this many images (deterministic)"),
    max_top1_drop: float | None = typer.Option(None, min=0, help="gate: points of top-1 below the reference"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable result on stdout"),
) -> None:
    """Accuracy of any image-classifier artifact on labeled images (top-1/5, per class, confusion)."""
    from pipeline.standalone import validate as run_validate

    _standalone(run_validate, as_json, artifact=artifact, data=data, labels=labels, preprocess=preprocess,
                size=size, preprocessing=preprocessing, color=color, interpolation=interpolation,
                reference=reference, threads=threads, limit=limit, max_top1_drop=max_top1_drop)


@app.command()
def bench(
    artifact: Path = typer.Argument(..., help="a .tflite, OpenVINO IR .xml or .onnx image classifier"),
    data: str | None = typer.Option(None, help="images to time on: a folder (flat or class sub-folders) or a CSV"),
    preprocess: Path | None = _PRE["preprocess"],
    size: tuple[int, int] | None = _PRE["size"],
    preprocessing: str | None = _PRE["preprocessing"],
    color: str | None = _PRE["color"],
    interpolation: str | None = _PRE["interpolation"],
    runs: int = typer.Option(50, min=10, help="timed runs"),
    warmup: int = typer.Option(5, min=0, help="untimed warmup runs"),
    threads: int = _PRE["threads"],
    thread_sweep: str | None = typer.Option(None, help="also measure at these thread counts, e.g. 1,2,4"),
    images: int = typer.Option(50, min=1, help="distinct images to cycle over"),
    max_p90_ms: float | None = typer.Option(None, min=0, help="gate: p90 latency in ms"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable result on stdout"),
) -> None:
    """Latency of any image-classifier artifact on real preprocessed images, in a clean child process."""
    from pipeline.errors import InputError
    from pipeline.standalone import bench as run_bench

    try:
        sweep = sorted({int(t) for t in thread_sweep.split(",")}) if thread_sweep else None
        if sweep and min(sweep) < 1:
            raise ValueError
    except ValueError:
        _fail(InputError(f"--thread-sweep: expected comma-separated positive integers. Received: {thread_sweep!r}"))
    _standalone(run_bench, as_json, artifact=artifact, data=data, preprocess=preprocess, size=size,
                preprocessing=preprocessing, color=color, interpolation=interpolation, runs=runs, warmup=warmup,
                threads=threads, thread_sweep=sweep, limit=images, max_p90_ms=max_p90_ms)


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
