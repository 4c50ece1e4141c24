"""`edgepipe validate | bench`: accuracy and latency of any artifact, on this host or on boards."""

from __future__ import annotations

from pathlib import Path

import typer

from edgepipe.cli.common import (
    DATA_EXPECTED,
    PREPROCESS_OPTIONS,
    app,
    fail,
    json_out,
    refuse_empty,
    run_standalone,
    ssh_options,
)
from edgepipe.core.bounds import MAX_IMAGES, MAX_RUNS, MAX_WARMUP
from edgepipe.core.errors import EdgepipeError


@app.command()
def validate(
    artifact: Path = typer.Argument(..., help="a .tflite, OpenVINO IR .xml or .onnx image classifier"),
    data: str = typer.Option(..., help="folder of class sub-folders, or a CSV with path,label"),
    labels: Path | None = typer.Option(None, help="labels file, one per line (default: labels.txt beside the "
                                                  "artifact, else the data's class folders)"),
    preprocess: Path | None = PREPROCESS_OPTIONS["preprocess"],
    size: tuple[int, int] | None = PREPROCESS_OPTIONS["size"],
    preprocessing: str | None = PREPROCESS_OPTIONS["preprocessing"],
    color: str | None = PREPROCESS_OPTIONS["color"],
    interpolation: str | None = PREPROCESS_OPTIONS["interpolation"],
    reference: Path | None = typer.Option(None, help="another artifact to compare with (drop + CI, agreement, parity)"),
    threads: int = PREPROCESS_OPTIONS["threads"],
    limit: int | None = typer.Option(None, min=1, max=MAX_IMAGES, help="use at most this many images "
                                                                       "(deterministic)"),
    max_top1_drop: float | None = typer.Option(None, min=0, help="gate: points of top-1 below the reference"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable result on stdout"),
    timeout: float = PREPROCESS_OPTIONS["timeout"],
    memory_mb: int = PREPROCESS_OPTIONS["memory_mb"],
) -> None:
    """Accuracy of any image-classifier artifact on labeled images (top-1/5, per class, confusion)."""
    from edgepipe.engine.standalone import validate as run_validate

    try:
        refuse_empty("--data", data, DATA_EXPECTED)  # '' was read as the current folder
    except EdgepipeError as err:
        fail(err, as_json)
    run_standalone(run_validate, as_json, artifact=artifact, data=data, labels=labels, preprocess=preprocess,
                size=size, preprocessing=preprocessing, color=color, interpolation=interpolation,
                reference=reference, threads=threads, limit=limit, max_top1_drop=max_top1_drop, timeout=timeout,
                memory_mb=memory_mb)


@app.command()
def bench(
    artifact: Path = typer.Argument(..., help="an artifact (.tflite, OpenVINO IR .xml, .onnx) to time on this host; "
                                              "with --device, a bundle directory or .tar to time on the boards"),
    device: list[str] | None = typer.Option(None, "--device",
                                            help="ssh://[user@]host[:port]/path (repeatable): benchmark on boards"),
    runs: int = typer.Option(50, min=1, max=MAX_RUNS, help="timed runs (host: at least 10)"),
    warmup: int = typer.Option(5, min=0, max=MAX_WARMUP, help="untimed warmup runs"),
    threads: int = PREPROCESS_OPTIONS["threads"],
    data: str | None = typer.Option(None, help="host: images to time on: a folder (flat or class sub-dirs) or a CSV"),
    preprocess: Path | None = PREPROCESS_OPTIONS["preprocess"],
    size: tuple[int, int] | None = PREPROCESS_OPTIONS["size"],
    preprocessing: str | None = PREPROCESS_OPTIONS["preprocessing"],
    color: str | None = PREPROCESS_OPTIONS["color"],
    interpolation: str | None = PREPROCESS_OPTIONS["interpolation"],
    thread_sweep: str | None = typer.Option(None, help="host: also measure at these thread counts, e.g. 1,2,4"),
    images: int = typer.Option(50, min=1, max=MAX_IMAGES, help="host: distinct images to cycle over"),
    max_p90_ms: float | None = typer.Option(None, min=0, help="host: gate, p90 latency in ms"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable result on stdout (boards: always)"),
    report: Path | None = typer.Option(None, help="boards: a run's report.json, to add the boards' rows under "
                                                  "\"devices\""),
    identity: Path | None = typer.Option(None, help="boards: ssh private key"),
    known_hosts: Path | None = typer.Option(None, help="boards: known_hosts file"),
    pubkey: Path | None = typer.Option(None, help="boards: trusted signing public key"),
    remote_python: str | None = typer.Option(None, help="boards: python on the board (default: python3)"),
    connect_timeout: int = typer.Option(5, min=1, help="boards: ssh connect timeout, seconds"),
    timeout: float = typer.Option(300, min=1, help="boards: timeout of each remote command, seconds"),
    retries: int = typer.Option(1, min=0, max=5, help="boards: extra attempts after a connection failure"),
    upload_timeout: float | None = typer.Option(None, "--upload-timeout", min=1, help="boards: seconds the bundle's "
                                                "upload may take (default: --timeout + its size at 256 KiB/s)"),
    timeout_s: float = PREPROCESS_OPTIONS["timeout"],
    memory_mb: int = PREPROCESS_OPTIONS["memory_mb"],
) -> None:
    """Latency of an artifact on this host (real preprocessed images, clean child process), or of a bundle on
    boards over SSH, concurrently (--device; exit 3 if any board failed)."""
    from edgepipe.core.errors import EXIT_PARTIAL, InputError

    if device:
        from dataclasses import replace

        from edgepipe.boards.device_bench import bench_devices, device_line
        from edgepipe.boards.signing import PUBLIC_NAME, default_key_dir
        from edgepipe.core.progress import stderr
        from edgepipe.reports.escape import terminal

        try:
            opts = replace(ssh_options(identity, known_hosts, connect_timeout, timeout, retries),
                           upload_timeout=upload_timeout)
            res = bench_devices(artifact, device, opts, pubkey or default_key_dir() / PUBLIC_NAME, runs, warmup,
                                threads, remote_python, report)
        except EdgepipeError as err:
            fail(err, as_json)
        json_out(res)
        for d in res["devices"]:
            stderr.print(terminal(device_line(d)), highlight=False, soft_wrap=True)
        if not res["ok"]:
            raise typer.Exit(EXIT_PARTIAL)
        return
    from edgepipe.engine.standalone import bench as run_bench

    try:
        refuse_empty("--data", data, "images to time on: a folder (flat or class sub-dirs) or a CSV")
        if runs < 10:
            raise InputError(f"--runs: expected at least 10 timed runs on the host. Received: {runs}")
        try:
            sweep = sorted({int(t) for t in thread_sweep.split(",")}) if thread_sweep else None
            if sweep and min(sweep) < 1:
                raise ValueError
        except ValueError:
            raise InputError(f"--thread-sweep: expected comma-separated positive integers. "
                             f"Received: {thread_sweep!r}") from None
    except EdgepipeError as err:
        fail(err, as_json)
    run_standalone(run_bench, as_json, artifact=artifact, data=data, preprocess=preprocess, size=size,
                preprocessing=preprocessing, color=color, interpolation=interpolation, runs=runs, warmup=warmup,
                threads=threads, thread_sweep=sweep, limit=images, max_p90_ms=max_p90_ms, timeout=timeout_s,
                memory_mb=memory_mb)
