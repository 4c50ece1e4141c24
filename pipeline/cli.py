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
    wait: bool = typer.Option(False, "--wait", help="if another run holds the output directory, wait for it"),
    executor: str | None = typer.Option(None, help="where targets run: local | process[=N] | ray[=ADDRESS]"),
) -> None:
    """Convert, quantize, validate and gate every configured target's artifacts."""
    from pipeline.config import example_config_path, load_config, parse_config

    try:
        cfg = load_config(config if config is not None else example_config_path(example))
        overrides = {k: v for k, v in {"output": output, "threads": threads, "executor": executor}.items()
                     if v is not None}
        if trust_model:
            overrides["model"] = {**cfg.model.model_dump(exclude_none=True), "trust": True}
        if overrides:
            cfg = parse_config({**cfg.model_dump(mode="json", exclude_none=False), **_json(overrides)},
                               source="command line")
        from pipeline.examples import resolve_model
        from pipeline.progress import stderr
        from pipeline.report import print_summary
        from pipeline.run import run_pipeline

        report = run_pipeline(cfg, resolve_model(cfg), wait=wait)
    except EdgepipeError as err:
        _fail(err)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (see main)
        from pipeline.progress import stderr

        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        stderr.print(f"[yellow]{what}[/]: completed stages are cached, unfinished ones were discarded; "
                     "rerun to resume")
        raise typer.Exit(143 if isinstance(err, Terminated) else 130) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    print_summary(report, stderr if as_json else _stdout(), cfg.output)
    raise typer.Exit(report["exit_code"])


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="sweep.yaml: models x recipes x targets (x boards) over a base config"),
    executor: str | None = typer.Option(None, help="local | process[=N] | ray[=ADDRESS] (overrides the sweep file)"),
    output: Path | None = typer.Option(None, help="output directory (overrides the sweep file)"),
    as_json: bool = typer.Option(False, "--json", help="print sweep.json on stdout"),
) -> None:
    """Run a sweep on an executor; print the leaderboard, Pareto fronts and the best candidate per target."""
    from pipeline.sweep_config import load_sweep

    try:
        overrides = {k: v for k, v in {"executor": executor, "output": output}.items() if v is not None}
        spec = load_sweep(config, overrides)
        from pipeline.leaderboard import print_leaderboard
        from pipeline.progress import stderr
        from pipeline.sweep import run_sweep

        report = run_sweep(spec)
    except EdgepipeError as err:
        _fail(err)
    except KeyboardInterrupt:
        from pipeline.progress import stderr

        stderr.print("[yellow]interrupted[/]: completed stages are cached; rerun to resume")
        raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    print_leaderboard(report, stderr if as_json else _stdout())
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

    t = Table("target", "accepts", "precisions", "artifact", "runtime", "compiler", "device", "this host",
              show_lines=True)
    for r in rows:
        host = "ready" if r["available"] else "missing: " + ", ".join(r["missing"])
        t.add_row(r["name"], r["accepts"], ", ".join(r["precisions"]), r["artifact"], r["runtime"],
                  r["compiler"] or "—", r["device"] or "host CPU", host)
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
    from targets.arm64_verify import command

    try:
        code = command(artifact, images, data, split, config, threads, cpu, as_json)
    except EdgepipeError as err:
        _fail(err)
    raise typer.Exit(code)


@app.command()
def keygen(
    out: Path | None = typer.Option(None, help="key directory (default: $EDGEPIPE_KEYS or ~/.config/edgepipe/keys)"),
    force: bool = typer.Option(False, "--force", help="replace an existing key pair"),
) -> None:
    """Create the Ed25519 key pair that signs bundles (edgepipe.key, edgepipe.pub)."""
    from pipeline.signing import default_key_dir
    from pipeline.signing import keygen as make_keys

    try:
        priv, pub = make_keys(out or default_key_dir(), force)
    except EdgepipeError as err:
        _fail(err)
    typer.echo(f"private key: {priv}\npublic key:  {pub}")


@app.command("bundle")
def bundle_cmd(
    artifact: Path = typer.Argument(..., help="a published artifact dir: <output>/artifacts/<target>-<precision>"),
    out: Path = typer.Option(..., "--out", help="bundle store; the bundle goes to OUT/<target>-<precision>-v<N>"),
    key: Path | None = typer.Option(None, help="Ed25519 private key (default: the edgepipe keygen key)"),
    version: int | None = typer.Option(None, min=1, help="bundle version (default: newest in OUT + 1)"),
    samples: str | None = typer.Option(None,
                                  help="labeled images for the on-board sample (default: the run's test split)"),
    per_class: int = typer.Option(2, min=1, help="sample images per class"),
    tar: bool = typer.Option(False, "--tar", help="also write OUT/<bundle>.tar"),
) -> None:
    """Bundle a published artifact: files + manifest (sha256, provenance, metrics, version) + signature."""
    from pipeline.archive import pack
    from pipeline.bundle import build_bundle
    from pipeline.signing import PRIVATE_NAME, default_key_dir

    try:
        path = build_bundle(artifact, out, key or default_key_dir() / PRIVATE_NAME, version, samples, per_class)
        if tar:
            typer.echo(pack(path, path.with_name(path.name + ".tar")))
    except EdgepipeError as err:
        _fail(err)
    typer.echo(path)


@app.command("verify")
def verify_cmd(
    bundle: Path = typer.Argument(..., help="bundle directory or .tar"),
    pubkey: Path | None = typer.Option(None, help="trusted public key (default: the edgepipe keygen key)"),
) -> None:
    """Verify a bundle's signature and every file against its manifest (exit 2 if refused)."""
    from pipeline.ship import require_pubkey, verified_bundle
    from pipeline.signing import PUBLIC_NAME, default_key_dir

    pubkey = pubkey or default_key_dir() / PUBLIC_NAME
    try:
        require_pubkey(pubkey)
        with verified_bundle(bundle, pubkey) as (_, manifest):
            typer.echo(f"ok: {manifest['name']} v{manifest['bundle_version']}, {len(manifest['files'])} files, "
                       f"signature valid ({pubkey})")
    except EdgepipeError as err:
        _fail(err)


def _ssh_options(identity, known_hosts, connect_timeout, timeout, retries):
    from pipeline.remote import SSHOptions

    return SSHOptions(identity, known_hosts, connect_timeout, timeout, retries)


@app.command()
def ship(
    bundle: Path = typer.Argument(..., help="bundle directory or .tar"),
    to: str = typer.Option(..., "--to", help="ssh://[user@]host[:port]/path[?python=PYTHON]"),
    identity: Path | None = typer.Option(None, help="ssh private key (default: ssh's own configuration)"),
    known_hosts: Path | None = typer.Option(None, help="known_hosts file (default: ssh's own)"),
    pubkey: Path | None = typer.Option(None, help="trusted signing public key (default: the edgepipe keygen key)"),
    remote_python: str | None = typer.Option(None, help="python on the board (default: python3)"),
    force: bool = typer.Option(False, "--force", help="allow a downgrade or a reinstall of the same version"),
    connect_timeout: int = typer.Option(5, min=1, help="ssh connect timeout, seconds"),
    timeout: float = typer.Option(300, min=1, help="timeout of each remote command, seconds"),
    retries: int = typer.Option(1, min=0, max=5, help="extra attempts after a connection failure"),
    keep: int = typer.Option(3, min=1, help="after a successful ship, keep this many newest bundles on the board "
                                            "(current and the previous one are always kept)"),
    lock_timeout: float = typer.Option(900, min=1, help="break a board lock not refreshed for this many seconds "
                                                        "(must exceed --timeout)"),
) -> None:
    """Upload a bundle to a board, verify it there, switch `current` atomically, smoke-test, roll back on failure.
    One ship per board at a time (PATH/.lock; exit 3 naming the holder); old bundles are pruned (--keep)."""
    from pipeline.ship import ShipFailed
    from pipeline.ship import ship as do_ship
    from pipeline.signing import PUBLIC_NAME, default_key_dir

    try:
        res = do_ship(bundle, to, _ssh_options(identity, known_hosts, connect_timeout, timeout, retries),
                      pubkey or default_key_dir() / PUBLIC_NAME, force, remote_python, keep=keep,
                      lock_timeout=lock_timeout)
    except ShipFailed as err:
        sys.stdout.write(json.dumps(err.report, indent=2, default=str) + "\n")
        _fail(err)
    except EdgepipeError as err:
        _fail(err)
    sys.stdout.write(json.dumps(res, indent=2, default=str) + "\n")


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
    target: Path = typer.Argument(..., help="an artifact (.tflite, OpenVINO IR .xml, .onnx) to time on this host; "
                                            "with --device, a bundle directory or .tar to time on the boards"),
    device: list[str] | None = typer.Option(None, "--device",
                                            help="ssh://[user@]host[:port]/path (repeatable): benchmark on boards"),
    runs: int = typer.Option(50, min=1, help="timed runs (host: at least 10)"),
    warmup: int = typer.Option(5, min=0, help="untimed warmup runs"),
    threads: int = _PRE["threads"],
    data: str | None = typer.Option(None, help="host: images to time on: a folder (flat or class sub-dirs) or a CSV"),
    preprocess: Path | None = _PRE["preprocess"],
    size: tuple[int, int] | None = _PRE["size"],
    preprocessing: str | None = _PRE["preprocessing"],
    color: str | None = _PRE["color"],
    interpolation: str | None = _PRE["interpolation"],
    thread_sweep: str | None = typer.Option(None, help="host: also measure at these thread counts, e.g. 1,2,4"),
    images: int = typer.Option(50, min=1, help="host: distinct images to cycle over"),
    max_p90_ms: float | None = typer.Option(None, min=0, help="host: gate, p90 latency in ms"),
    as_json: bool = typer.Option(False, "--json", help="host: machine-readable result on stdout"),
    report: Path | None = typer.Option(None, help="boards: a run's report.json, to add the boards' rows under "
                                                  "\"devices\""),
    identity: Path | None = typer.Option(None, help="boards: ssh private key"),
    known_hosts: Path | None = typer.Option(None, help="boards: known_hosts file"),
    pubkey: Path | None = typer.Option(None, help="boards: trusted signing public key"),
    remote_python: str | None = typer.Option(None, help="boards: python on the board (default: python3)"),
    connect_timeout: int = typer.Option(5, min=1, help="boards: ssh connect timeout, seconds"),
    timeout: float = typer.Option(300, min=1, help="boards: timeout of each remote command, seconds"),
    retries: int = typer.Option(1, min=0, max=5, help="boards: extra attempts after a connection failure"),
) -> None:
    """Latency of an artifact on this host (real preprocessed images, clean child process), or of a bundle on
    boards over SSH, concurrently (--device; exit 3 if any board failed)."""
    from pipeline.errors import EXIT_PARTIAL, InputError

    if device:
        from pipeline.devices import bench_devices
        from pipeline.progress import stderr
        from pipeline.signing import PUBLIC_NAME, default_key_dir

        try:
            res = bench_devices(target, device, _ssh_options(identity, known_hosts, connect_timeout, timeout, retries),
                                pubkey or default_key_dir() / PUBLIC_NAME, runs, warmup, threads, remote_python, report)
        except EdgepipeError as err:
            _fail(err)
        sys.stdout.write(json.dumps(res, indent=2, default=str) + "\n")
        for d in res["devices"]:
            lat = d.get("latency") or {}
            p50 = f"p50 {lat['p50_ms']:.2f} ms" if lat.get("p50_ms") is not None else ""
            stderr.print(f"{d['device']}: {d['status']} {p50} {d.get('error') or ''}", highlight=False, soft_wrap=True)
        if not res["ok"]:
            raise typer.Exit(EXIT_PARTIAL)
        return
    from pipeline.standalone import bench as run_bench

    try:
        if runs < 10:
            raise InputError(f"--runs: expected at least 10 timed runs on the host. Received: {runs}")
        try:
            sweep = sorted({int(t) for t in thread_sweep.split(",")}) if thread_sweep else None
            if sweep and min(sweep) < 1:
                raise ValueError
        except ValueError:
            raise InputError(f"--thread-sweep: expected comma-separated positive integers. "
                             f"Received: {thread_sweep!r}") from None
    except InputError as err:
        _fail(err)
    _standalone(run_bench, as_json, artifact=target, data=data, preprocess=preprocess, size=size,
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


if __name__ == "__main__":
    main()
