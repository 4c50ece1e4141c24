"""`edgepipe targets | recipes | preflight | verify-arm`: what a host and a model can do."""

from __future__ import annotations

from pathlib import Path

import typer

from edgepipe.cli.common import app, fail, json_out, stdout_console
from edgepipe.core.errors import EdgepipeError


@app.command("targets")
def list_targets(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List deployment targets and whether this host can build them (imports no toolkit)."""
    from edgepipe import targets as registry

    rows = [t.as_dict() for t in registry.REGISTRY.values()]
    if as_json:
        json_out(rows)
        return
    from rich.table import Table

    t = Table("target", "accepts", "precisions", "artifact", "runtime", "compiler", "device", "this host",
              show_lines=True)
    for r in rows:
        host = "ready" if r["available"] else "missing: " + ", ".join(r["missing"])
        t.add_row(r["name"], r["accepts"], ", ".join(r["precisions"]), r["artifact"], r["runtime"],
                  r["compiler"] or "—", r["device"] or "host CPU", host)
    console = stdout_console()
    console.print(t)
    for r in rows:  # in full, each on its own lines: never cut in a table cell
        if r["how_to_finish"]:
            console.print(f"{r['name']}: to finish it on this host:\n  {r['how_to_finish']}", highlight=False,
                          markup=False, soft_wrap=True)


@app.command("recipes")
def list_recipes(
    config: Path | None = typer.Argument(None, help="also list this pipeline.yaml's own recipes"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """List quantization recipes and which quantizers can build each (imports no toolkit)."""
    from edgepipe.quantize.recipes import QUANTIZERS, describe_all

    user = {}
    if config is not None:
        from edgepipe.config.schema import load_config

        try:
            user = dict(load_config(config).quantization.recipes)
        except EdgepipeError as err:
            fail(err, as_json)
    from edgepipe import targets
    from edgepipe.config.schema import TargetEntry

    rows = describe_all(user, {t: TargetEntry(name=t).quantizer() for t in targets.REGISTRY})
    if as_json:
        json_out(rows)
        return
    from rich.table import Table

    t = Table("recipe", "settings", *QUANTIZERS, "description")
    for r in rows:
        t.add_row(r["name"], r["summary"], *("yes" if r["quantizers"][q]["possible"] else "no" for q in QUANTIZERS),
                  r["description"])
    stdout_console().print(t)


@app.command()
def preflight(
    model: Path = typer.Argument(..., help="an INT8 .tflite model"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Edge TPU pre-flight (no compiler needed): ops, first CPU fallback, SRAM estimate, segments."""
    from edgepipe.targets.edgetpu.preflight import analyze, render_table

    try:
        report = analyze(model)
    except EdgepipeError as err:
        fail(err, as_json)
    if as_json:
        json_out(report.to_json())
    else:
        stdout_console().print(render_table(report))


@app.command("verify-arm")
def verify_arm(
    artifact: Path = typer.Argument(..., help="a .tflite artifact, or its published directory"),
    images: int = typer.Option(20, min=1, help="number of preprocessed test images"),
    data: str | None = typer.Option(None, help="image source: class-folder dir, CSV or example:elpv "
                                               "(default: the run's validation data)"),
    split: str = typer.Option("test", help="split of --data: train, calibration, test or all"),
    config: Path | None = typer.Option(None, help="pipeline.yaml to take preprocessing, labels and data from"),
    threads: int = typer.Option(2, min=1, help="inference threads on both sides"),
    cpu: str = typer.Option("cortex-a76", help="emulated core: cortex-a53, cortex-a72, cortex-a76, neoverse-n1"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Run a TFLite artifact on an arm64 userland under emulation (qemu-user) and compare with the host."""
    from edgepipe.targets.arm64.verify import command

    try:
        code = command(artifact, images, data, split, config, threads, cpu, as_json)
    except EdgepipeError as err:
        fail(err, as_json)
    raise typer.Exit(code)
