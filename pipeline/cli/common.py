"""What every `edgepipe` command module shares: the Typer app, error exit, console, option sets.

Commands live in app.py (run, init, sweep, examples, schema, and the options every command shares),
inspect.py (targets, recipes, preflight, verify-arm), boards.py (keygen, bundle, verify, ship,
board status|list|rollback|trust) and measure.py (validate, bench). Heavy toolkits are imported only
inside commands. Conventions: `-h`, `--json` on every command (JSON on stdout for every outcome,
errors included), `-o/--output`, flags that take no value.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

from edgepipe.core.errors import EXIT_BAD_INPUT, EdgepipeError


def plain_flags(command, ctx) -> None:
    """Flags read as flags in the help: no `<bool>` / `<int>` type after them (they take no value)."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""


class Group(TyperGroup):
    """The `edgepipe` group: every command's help shows its flags as plain flags."""

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            plain_flags(command, ctx)
        return command

    def format_help(self, ctx, formatter) -> None:
        plain_flags(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(cls=Group, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Trained Keras Xception -> validated TFLite / OpenVINO / ONNX INT8 edge artifacts.\n\n"
                       "Start with `edgepipe run` (the built-in example), or `edgepipe run MODEL --data DIR`.")


def json_out(data) -> None:
    """Machine-readable output: JSON on stdout (everything for people goes to stderr)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def json_quiet_stdout(as_json: bool):
    """With `--json`, stdout carries only the JSON: what is printed on sys.stdout during the work goes to stderr
    (Ray forwards its workers' output and raylet messages, e.g. a retried task, to the driver's sys.stdout)."""
    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


def fail(err: Exception, as_json: bool = False) -> None:
    """Exit with the error's code; the message on stderr, and with `--json` also as JSON on stdout."""
    from edgepipe.core.progress import stderr
    from edgepipe.reports.escape import terminal

    if as_json:
        json_out({"error": str(err), "type": type(err).__name__,
                  "exit_code": getattr(err, "exit_code", EXIT_BAD_INPUT)})
    stderr.quiet = False  # -q silences progress, never an error
    # messages quote user input (paths, labels, YAML values): escaped for the terminal, never hard-wrapped
    stderr.print(f"[bold red]error:[/] {terminal(str(err))}", highlight=False, soft_wrap=True)
    raise typer.Exit(getattr(err, "exit_code", EXIT_BAD_INPUT))


DATA_EXPECTED = "labeled images: a folder of class sub-folders or a CSV path,label"  # run/init/validate --data


def refuse_empty(option: str, value: str | None, expected: str) -> None:
    """An empty (or blank) option value is a mistake, not "the default": `--data ''` read the current folder as
    the data set, `--out ''` wrote into the current folder. A ConfigError naming the option and what it takes.
    Options that take a path are declared as `str` so that the empty value is still seen (Path('') is '.')."""
    from edgepipe.core.errors import ConfigError, expected_received

    if value is not None and not str(value).strip():
        raise ConfigError(expected_received(option, expected, "an empty value"))


def interrupted(err: KeyboardInterrupt, what: str = "completed stages are cached, unfinished ones were "
                                                  "discarded; rerun to resume") -> None:
    """Ctrl-C (exit 130) or SIGTERM (exit 143): say so, then exit."""
    from edgepipe.core.progress import stderr
    from edgepipe.core.signals import Terminated

    term = isinstance(err, Terminated)
    stderr.print(f"[yellow]{'terminated (SIGTERM)' if term else 'interrupted'}[/]: {what}")
    raise typer.Exit(143 if term else 130)


def stdout_console(stderr: bool = False):
    """A console for tables (on stderr when stdout holds --json output)."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(stderr=stderr, width=160)
    return console


def jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def ssh_options(identity, known_hosts, connect_timeout, timeout, retries):
    from edgepipe.boards.remote import SSHOptions

    return SSHOptions(identity, known_hosts, connect_timeout, timeout, retries)


def run_standalone(fn, as_json: bool, **kw) -> None:
    from edgepipe.core.progress import stderr

    try:
        from edgepipe.engine.standalone import render

        result = fn(**kw)
    except EdgepipeError as err:
        fail(err, as_json)
    except KeyboardInterrupt as err:  # the supervised child was killed on the way out
        interrupted(err, "nothing was written")
    if as_json:
        json_out(result)
    else:
        stdout_console().print(render(result))
    if result["reasons"]:
        from edgepipe.reports.escape import terminal

        stderr.print("[red]gate failed:[/] " + terminal("; ".join(result["reasons"])), highlight=False)
    raise typer.Exit(result["exit_code"])


PREPROCESS_OPTIONS = {
    "preprocess": typer.Option(None, help="preprocess.json (default: the one beside the artifact)"),
    "size": typer.Option(None, help="input height and width (default: the model's)"),
    "preprocessing": typer.Option(None, help="xception | unit | imagenet | raw (when there is no preprocess.json)"),
    "color": typer.Option(None, help="rgb | grayscale_to_rgb | grayscale"),
    "interpolation": typer.Option(None, help="bilinear | bicubic | nearest"),
    "threads": typer.Option(2, min=1, help="inference threads (at most 4 x the cores)"),
    "timeout": typer.Option(600.0, "--child-timeout", min=1, max=86400,
                            help="seconds the model's child process may go without progress before it is killed"),
    "memory_mb": typer.Option(8192, min=256, max=1 << 22, help="address-space limit of the model's child process, "
                                                               "MiB"),
}


SSH_OPTIONS = {  # the commands that reach a board over SSH (ship, board status|list|rollback)
    "identity": typer.Option(None, help="ssh private key (default: ssh's own configuration)"),
    "known_hosts": typer.Option(None, help="known_hosts file (default: ssh's own)"),
    "remote_python": typer.Option(None, help="python on the board (default: python3)"),
    "connect_timeout": typer.Option(5, min=1, help="ssh connect timeout, seconds"),
    "timeout": typer.Option(300, min=1, help="timeout of each remote command, seconds"),
    "retries": typer.Option(1, min=0, max=5, help="extra attempts after a connection failure"),
    "lock_timeout": typer.Option(900, min=1, help="break a board lock not refreshed for this many seconds "
                                                  "(must exceed --timeout)"),
}
