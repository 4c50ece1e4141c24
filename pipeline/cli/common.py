"""What every `edgepipe` command module shares: the Typer app, error exit, console, option sets.

Commands live in app.py (run, sweep, examples), inspect.py (targets, recipes,
preflight, verify-arm), boards.py (keygen, bundle, verify, ship) and measure.py
(validate, bench). Heavy toolkits are imported only inside commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from pipeline.core.errors import EXIT_BAD_INPUT, EdgepipeError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Trained Keras Xception -> validated TFLite / OpenVINO INT8 edge artifacts.")


def fail(err: Exception) -> None:
    from rich.markup import escape

    from pipeline.core.progress import stderr

    # never hard-wrap messages; brackets in them are text ("pip install 'edgepipe[mlflow]'"), not markup
    stderr.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    raise typer.Exit(getattr(err, "exit_code", EXIT_BAD_INPUT))


def stdout_console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=160)
    return console


def jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def ssh_options(identity, known_hosts, connect_timeout, timeout, retries):
    from pipeline.boards.remote import SSHOptions

    return SSHOptions(identity, known_hosts, connect_timeout, timeout, retries)


def run_standalone(fn, as_json: bool, **kw) -> None:
    from pipeline.core.progress import stderr

    try:
        from pipeline.run.standalone import render

        result = fn(**kw)
    except EdgepipeError as err:
        fail(err)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    else:
        stdout_console().print(render(result))
    if result["reasons"]:
        stderr.print("[red]gate failed:[/] " + "; ".join(result["reasons"]), highlight=False)
    raise typer.Exit(result["exit_code"])


PREPROCESS_OPTIONS = {
    "preprocess": typer.Option(None, help="preprocess.json (default: the one beside the artifact)"),
    "size": typer.Option(None, help="input height and width (default: the model's)"),
    "preprocessing": typer.Option(None, help="xception | unit | imagenet | raw (when there is no preprocess.json)"),
    "color": typer.Option(None, help="rgb | grayscale_to_rgb | grayscale"),
    "interpolation": typer.Option(None, help="bilinear | bicubic | nearest"),
    "threads": typer.Option(2, min=1, help="inference threads"),
}
