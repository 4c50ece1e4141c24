"""The `edgepipe` command line (entry point `main`): the options every command shares (--version, -v, -q),
run, sweep, examples, schema. Heavy toolkits are imported only inside commands; the other command
groups are in inspect.py, boards.py and measure.py (shared parts in common.py)."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import typer

from edgepipe.cli.common import app, fail, interrupted, json_out, json_quiet_stdout, stdout_console
from edgepipe.core.errors import EdgepipeError


def _version(value: bool) -> None:
    if value:
        from edgepipe import __version__

        typer.echo(f"edgepipe {__version__}")
        raise typer.Exit()


@app.callback()
def common(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="print the version and exit"),
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, show_default=False,
                                help="more output: -v adds the toolkits' own logs (TensorFlow, absl, LiteRT, NNCF), "
                                     "-vv debug"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="errors and results only (no progress lines)"),
) -> None:
    """Options every command shares (they go before the command: `edgepipe -v run ...`)."""
    from edgepipe.core.logs import QUIET, filter_toolkit_noise, set_verbosity
    from edgepipe.core.progress import stderr

    set_verbosity(QUIET if quiet else verbose)
    stderr.quiet = quiet  # errors still print (cli.common.fail)
    filter_toolkit_noise()  # toolkits' C++ log lines on fd 2 (a no-op with -v, or under a test runner)


OWN = "With your own MODEL"
RUN_HELP = ("Convert, quantize, validate and gate every configured target's artifacts.\n\n"
            "Your own model needs no YAML: `edgepipe run MODEL --data DIR` reads the input size from the model and "
            "the labels from the class folders, says every default it chose, and writes OUTPUT/pipeline.yaml, which "
            "repeats the run.")


@app.command(help=RUN_HELP)
def run(
    source: Path | None = typer.Argument(None, metavar="CONFIG_OR_MODEL",
                                         help="a pipeline.yaml, or your model (.keras file or SavedModel directory) "
                                              "with --data; default: the built-in example"),
    data: str | None = typer.Option(None, help="labeled images: a folder of class sub-folders, or a CSV path,label",
                                    rich_help_panel=OWN),
    targets: str | None = typer.Option(None, help="comma-separated targets (default: those this host can build)",
                                       rich_help_panel=OWN),
    labels: Path | None = typer.Option(None, help="labels file, one class per line in output order (default: the "
                                                  "class folders' names, sorted)", rich_help_panel=OWN),
    precision: bool | None = typer.Option(None, "--int8/--fp32", help="INT8 or FP32 artifacts only (default: each "
                                                                      "target's own)", rich_help_panel=OWN),
    preprocessing: str | None = typer.Option(None, help="xception | unit | imagenet | raw (default: xception, "
                                                        "[-1, 1])", rich_help_panel=OWN),
    example: str = typer.Option("elpv-xception", help="built-in example used when no CONFIG_OR_MODEL is given"),
    output: Path | None = typer.Option(None, "-o", "--output", help="output directory (overrides the config)"),
    threads: int | None = typer.Option(None, min=1, help="inference threads (overrides the config)"),
    trust_model: bool = typer.Option(False, "--trust-model", help="allow Keras models needing safe_mode=False"),
    as_json: bool = typer.Option(False, "--json", help="print report.json on stdout"),
    wait: bool = typer.Option(False, "--wait", help="if another run holds the output directory, wait for it"),
    executor: str | None = typer.Option(None, help="where targets run: local | process[=N] | ray[=ADDRESS]"),
    mlflow: bool = typer.Option(False, "--mlflow", help="log the run to MLflow: the store $MLFLOW_TRACKING_URI "
                                "names, else ./mlruns (pip install 'edgepipe\\[mlflow]')"),
    strict: bool = typer.Option(False, "--strict", help="a target this host cannot finish (no compiler, device or "
                                                        "package: 'not available here') makes the run exit 3"),
) -> None:
    """A pipeline.yaml, a built-in example, or your model with --data (pipeline/cli/configs.py), run."""
    from edgepipe.cli.configs import run_config, write_repeatable

    try:
        cfg, plan = run_config(source, example, {"data": data, "targets": targets, "labels": labels,
                                                 "precision": None if precision is None else
                                                 ("int8" if precision else "fp32"), "preprocessing": preprocessing},
                               output=output, threads=threads, executor=executor, trust=trust_model)
        from edgepipe.core.progress import stderr
        from edgepipe.engine.orchestrate import run_pipeline
        from edgepipe.examples.models import resolve_model
        from edgepipe.reports.terminal import print_summary
        from edgepipe.reports.tracking import open_tracker

        tracker = open_tracker(mlflow)  # before the run: a missing mlflow fails now, not after it
        with json_quiet_stdout(as_json):
            report = run_pipeline(cfg, resolve_model(cfg), wait=wait, strict=strict)
        if plan is not None:
            write_repeatable(plan, cfg)
        if tracker:
            config_file = Path(cfg.output) / "pipeline.yaml" if plan is not None else source  # the run's config
            tracker.log(report, cfg.model_dump(mode="json"), config_file, Path(cfg.output), stderr)
    except EdgepipeError as err:
        fail(err, as_json)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (see main)
        interrupted(err)
    if as_json:
        json_out(report)
    print_summary(report, stdout_console(stderr=as_json), cfg.output)
    raise typer.Exit(report["exit_code"])


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="sweep.yaml: models x recipes x targets (x boards) over a base config"),
    executor: str | None = typer.Option(None, help="local | process[=N] | ray[=ADDRESS] (overrides the sweep file)"),
    output: Path | None = typer.Option(None, "-o", "--output", help="output directory (overrides the sweep file)"),
    as_json: bool = typer.Option(False, "--json", help="print sweep.json on stdout"),
) -> None:
    """Run a sweep on an executor; print the leaderboard, Pareto fronts and the best candidate per target."""
    from edgepipe.sweeps.config import load_sweep

    try:
        overrides = {k: v for k, v in {"executor": executor, "output": output}.items() if v is not None}
        spec = load_sweep(config, overrides)
        from edgepipe.sweeps.leaderboard import print_leaderboard
        from edgepipe.sweeps.runner import run_sweep

        with json_quiet_stdout(as_json):
            report = run_sweep(spec)
    except EdgepipeError as err:
        fail(err, as_json)
    except KeyboardInterrupt as err:
        interrupted(err, "completed stages are cached; rerun to resume")
    if as_json:
        json_out(report)
    print_leaderboard(report, stdout_console(stderr=as_json))
    raise typer.Exit(report["exit_code"])


@app.command()
def examples(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List the built-in examples (`edgepipe run --example NAME`)."""
    from edgepipe.config.schema import EXAMPLE_MODELS

    if as_json:
        json_out(list(EXAMPLE_MODELS))
        return
    for name in EXAMPLE_MODELS:
        typer.echo(name)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from edgepipe.reports.escape import terminal

        return terminal(super().format(record), markup=False)


def main() -> None:
    from edgepipe.core.children import install_sigterm
    from edgepipe.core.signals import TERMINATED, Terminated

    install_sigterm()  # SIGTERM -> Terminated (exit 143), and a hard stop if the main thread is stuck
    handler = logging.StreamHandler()
    handler.setFormatter(_PlainFormatter("%(levelname)s: %(message)s"))  # warnings quote labels and paths
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    code = 0
    try:
        app()
    except SystemExit as done:
        code = done.code
    if TERMINATED.is_set() and code != 143:  # SIGTERM came, but a finalizer swallowed its exception
        try:
            interrupted(Terminated())
        except typer.Exit as stop:
            code = stop.exit_code
    raise SystemExit(code)


# the other command groups register on `app` when imported, after run/sweep/examples, in --help order
for _group in ("configs", "inspect", "measure", "boards"):
    importlib.import_module(f"{__package__}.{_group}")

if __name__ == "__main__":
    main()
