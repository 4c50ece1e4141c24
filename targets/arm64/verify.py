"""`edgepipe verify-arm`: a published TFLite artifact, N real preprocessed images, arm64 (emulated) vs host.

The images come from, in this order: `--config` (its validation data, or `--data` with its
splits), or `--data SOURCE` with the artifact's own `preprocess.json` and `labels.txt`, or —
when the artifact was published by `edgepipe run` — the validation source recorded in that
run's `report.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgepipe.core.errors import ConfigError, InputError, expected_received
from edgepipe.core.progress import stderr
from edgepipe.targets.arm64.userland import Unavailable


def resolve_artifact(path: Path) -> Path:
    """The .tflite file of an artifact given as the file or as its published directory."""
    path = Path(path)
    if path.is_dir():
        record = path / "artifact.json"
        if record.is_file():
            model = path / Path(json.loads(record.read_text())["path"]).name
        else:
            found = sorted(path.glob("*.tflite"))
            model = found[0] if len(found) == 1 else path / "(none or several .tflite files)"
    else:
        model = path
    if model.suffix != ".tflite" or not model.is_file():
        raise InputError(expected_received("artifact", "a .tflite file or a published artifact directory with one",
                                           repr(str(path))))
    return model


def load_data(model: Path, n: int, data: str | None = None, split: str = "test", config: Path | None = None):
    """(images, labels, description) for `n` images, preprocessed as the artifact expects."""
    from pydantic import ValidationError

    from edgepipe.calibration.dataset import load_subset
    from edgepipe.calibration.preprocess import PreprocessSpec
    from edgepipe.config.schema import SplitSpec, Subset, load_config
    from edgepipe.core.labels import read_labels

    art_dir = model.parent
    if config is not None:
        cfg = load_config(config)
        spec, labels, splits = PreprocessSpec.from_input(cfg.input), read_labels(cfg.data.labels), cfg.data.splits
        source, split = (data, split) if data is not None else (cfg.data.validation.source, cfg.data.validation.split)
    else:
        spec = _spec_beside(art_dir)
        labels, splits = read_labels(art_dir / "labels.txt"), SplitSpec()
        source, split = (data, split) if data is not None else _run_data(art_dir)
    try:
        subset = Subset(source=source, split=split, size=n)
    except ValidationError as err:
        raise ConfigError(expected_received("--split", "one of train, calibration, test, all", repr(split))) from err
    batch = load_subset(subset, splits, labels, spec, "verify-arm data")
    return batch.images, batch.labels, {"source": source, "split": split, "count": len(batch), "sha256": batch.sha256}


def _spec_beside(art_dir: Path):
    from edgepipe.calibration.preprocess import PreprocessSpec

    path = art_dir / "preprocess.json"
    if not path.is_file():
        raise InputError(f"preprocessing: expected {path} (written by edgepipe run beside each artifact), or "
                         "--config pipeline.yaml. Received: no such file")
    try:
        return PreprocessSpec(**json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise InputError(expected_received(str(path), "an edgepipe preprocessing spec", err)) from err


def _run_data(art_dir: Path) -> tuple[str, str]:
    report = art_dir.parent.parent / "report.json"
    try:
        from edgepipe.core import safeio

        valid = json.loads(safeio.read_text(report, "run report"))["data"]["validation"]
        return valid["source"], valid["split"]
    except (OSError, ValueError, KeyError, TypeError, InputError):
        raise InputError("data: expected --data SOURCE (a class-folder directory, a CSV, or example:elpv) or "
                         f"--config, since no run report with validation data was found at {report}. "
                         "Received: none") from None


def command(artifact: Path, n: int, data: str | None, split: str, config: Path | None, threads: int, cpu: str,
            as_json: bool) -> int:
    """The CLI command body: prints the result, returns the exit code."""
    from edgepipe.core.cache import cache_root
    from edgepipe.targets.arm64.emulated import verify
    from edgepipe.targets.arm64.userland import CPUS, cached_userland, host_problems

    if cpu not in CPUS:
        raise ConfigError(expected_received("--cpu", f"one of {sorted(CPUS)}", repr(cpu)))
    model = resolve_artifact(artifact)
    try:
        problem = host_problems(need_build=cached_userland(cache_root()) is None)
        if problem is not None:  # before loading any data: say at once what this host lacks
            raise problem
        images, labels, info = load_data(model, n, data, split, config)
        rec = verify(model, images, labels, threads=threads, cpu=cpu)
    except Unavailable as err:
        if as_json:
            sys.stdout.write(json.dumps({"status": "unavailable", "reason": err.status, "message": str(err)}) + "\n")
        raise
    rec["data"] = info
    if as_json:
        sys.stdout.write(json.dumps(rec, indent=2, default=str) + "\n")
    render(rec, stderr if as_json else _stdout())
    return 0 if rec["status"] == "passed" else 1


def render(rec: dict, console) -> None:
    a, arm, host, d = rec["agreement"], rec["arm64"], rec["host"], rec.get("data") or {}
    lat, hlat = rec["emulated_latency"], rec["host_latency"]
    rt = lambda s: f"{(s.get('runtime') or {}).get('name')} {(s.get('runtime') or {}).get('version')}"  # noqa: E731
    lines = [
        f"[bold]{Path(rec['model']).name}[/] on arm64 (emulated) vs host, {rec['images']} images"
        + (f" of {d['source']} / {d['split']}" if d else ""),
        f"  arm64: {arm['machine']} ({arm['cpu']} under qemu-aarch64 {arm['emulator']}), Python {arm['python']}, "
        f"{rt(arm)}, numpy {arm['numpy']}",
        f"  host:  {host['machine']} ({host['cpu']}), Python {host['python']}, {rt(host)}, numpy {host['numpy']}",
    ]
    tol = a["tolerance"]
    if "max_lsb_diff" in a:
        values = ("bit-exact" if a["bit_exact"] else f"{a['differing_outputs']} differ, max {a['max_lsb_diff']} LSB")
        lines.append(f"  {a['dtype']} outputs: {values} ({a['outputs']} compared; tolerance {tol['max_lsb']} LSB)")
    else:
        lines.append(f"  {a['dtype']} outputs: max abs diff {a['max_abs_diff']:.3g} "
                     f"({a['differing_outputs']} of {a['outputs']} not identical; tolerance {tol['max_abs']:g})")
    lines.append(f"  scores: max abs diff {a['scores_max_abs_diff']:.3g}")
    lines.append(f"  top-1 agreement: {a['top1_agree']}/{a['images']} ({a['top1_agreement']:.3f})")
    if "top1_arm64" in a:
        lines.append(f"  top-1 on {a['labeled']} labeled: arm64 {a['top1_arm64']:.3f}, host {a['top1_host']:.3f}")
    if "p50_ms" in lat:
        lines.append(f"  latency: emulated p50 {lat['p50_ms']:.1f} ms ({lat['note']}); "
                     f"host p50 {hlat.get('p50_ms', float('nan')):.1f} ms")
    verdict = "[green]passed[/]" if rec["status"] == "passed" else "[red]failed[/]: " + "; ".join(a["reasons"])
    lines.append(f"  verdict: {verdict}")
    for ln in lines:
        console.print(ln, highlight=False, soft_wrap=True)


def _stdout():
    from rich.console import Console

    return Console(width=160) if not Console().is_terminal else Console()

