"""`edgepipe validate` and `edgepipe bench` on any image-classifier artifact (.tflite,
OpenVINO IR .xml, .onnx), also one edgepipe did not build, given its preprocessing.

Preprocessing comes from `--preprocess preprocess.json`, else the `preprocess.json` beside
the artifact (edgepipe's own artifacts carry one), else `--preprocessing` (+ `--size`, which
defaults to the model's input size). Labels: `--labels`, else `labels.txt` beside the
artifact, else the class sub-folder names of `--data`.

A foreign model is never loaded in this process: its load, first inference and every score are
computed in a supervised child (`edgepipe.engine.probe.run_foreign`), its latency in the latency
child (`edgepipe.validators.latency_child`), both with wall (no progress for `timeout` seconds),
CPU and memory limits (`edgepipe.core.children`); a model that hangs, crashes or fails is an
InputError naming it (exit 2), a missing runtime exit 3.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np

from edgepipe import formats
from edgepipe.calibration.preprocess import RANGES, PreprocessSpec
from edgepipe.core import safeio
from edgepipe.core.bounds import MAX_INPUT_SIDE, check_threads
from edgepipe.core.children import DEFAULT_MEMORY_MB, Limits
from edgepipe.core.errors import InputError, StageError, expected_received
from edgepipe.core.progress import bar, stderr

COLORS = ("rgb", "grayscale_to_rgb", "grayscale")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
DEFAULT_TIMEOUT_S = 600.0  # a foreign model's child making no progress for this long is hung


def detect_format(path: Path) -> str:
    """The format of a foreign artifact file (one the formats table can open by path), its companions present."""
    path = Path(path)
    openable = tuple(f for f in formats.FORMATS if f.opens_files)
    problem = safeio.stat_problem(path)
    if problem is not None:
        raise InputError(expected_received("artifact", f"an existing {formats.file_labels(openable)} file",
                                           f"{str(path)!r} ({problem})"))
    fmt = formats.for_suffix(path)
    if fmt not in openable:
        raise InputError(expected_received("artifact", f"a {formats.file_labels(openable)} file", repr(path.name)))
    for suffix, what in fmt.companions:
        companion = path.with_suffix(suffix)
        problem = safeio.stat_problem(companion)
        if problem is not None:
            raise InputError(expected_received(f"{fmt.title} {path.name!r}",
                                               f"its {what} {companion.name!r} beside it", problem))
    return fmt.name


def detect_precision(fmt: str, path: Path, runner=None) -> str:
    """int8 when the graph holds quantized tensors or quantize ops; else fp32 (asked of the format's module)."""
    return formats.get(fmt).detect_precision(path, runner)


def open_artifact(path: Path, threads: int, limits: Limits | None = None) -> tuple[str, dict]:
    """(format, facts: input_hwc, layout, precision, runtime) of an artifact file, found by loading and
    first-running it in a limited child process; a missing runtime is exit 3, any failure exit 2."""
    from edgepipe.core.errors import DeviceUnavailableError
    from edgepipe.formats.runners import runtime_missing

    fmt = detect_format(path)
    missing = runtime_missing(fmt)  # found, not imported: the runtime only ever loads in the child
    if missing:
        raise DeviceUnavailableError(f"{Path(path).name}: cannot be run on this host: runtime missing ({missing})")
    facts = _foreign(path, fmt, threads, limits)
    if facts["layout"] == "nchw":
        stderr.print(f"{safe(Path(path).name)}: the model's input is channels-first (NCHW); "
                     "preprocessed HWC images are fed transposed to CHW")
    return fmt, facts


def _foreign(path: Path, fmt: str, threads: int, limits: Limits | None, images=None, progress=None) -> dict:
    from edgepipe.engine.probe import ArtifactProbeError, run_foreign

    try:
        return run_foreign(path, fmt, threads, limits or Limits(DEFAULT_TIMEOUT_S, DEFAULT_MEMORY_MB), images,
                           progress)
    except ArtifactProbeError as err:  # the user's artifact: bad input (exit 2), not a failed build
        raise InputError(str(err)) from None


def safe(text: str) -> str:
    from edgepipe.reports.escape import terminal

    return terminal(text)


def resolve_spec(artifact: Path, model_hwc: tuple[int, int, int], preprocess: Path | None,
                 size: tuple[int, int] | None, preprocessing: str | None, color: str | None,
                 interpolation: str | None) -> PreprocessSpec:
    source = preprocess or (Path(artifact).parent / "preprocess.json")
    if preprocess is not None or (preprocessing is None and source.is_file()):
        allowed = {f.name for f in fields(PreprocessSpec)}
        try:
            raw = json.loads(safeio.read_text(source, "preprocess spec"))
            if not isinstance(raw, dict) or not set(raw) <= allowed:
                raise ValueError(f"keys {sorted(raw) if isinstance(raw, dict) else type(raw).__name__}")
            bad = {k: raw[k] for k in ("height", "width", "channels") if k in raw and not (
                isinstance(raw[k], int) and not isinstance(raw[k], bool) and 0 < raw[k] <= MAX_INPUT_SIDE)}
            if bad or not all(isinstance(raw.get(k, ""), str) for k in ("mode", "interpolation", "color")):
                raise ValueError(f"values {bad or {k: raw.get(k) for k in ('mode', 'interpolation', 'color')}}")
            spec = PreprocessSpec(**raw)
        except (OSError, ValueError, TypeError, RecursionError) as err:
            raise InputError(expected_received(f"preprocess spec {str(source)!r}",
                                               f"a JSON object with keys from {sorted(allowed)}", err)) from err
    else:
        if preprocessing is None:
            raise InputError(expected_received(
                f"preprocessing for {Path(artifact).name!r}",
                "--preprocess preprocess.json or --preprocessing {" + ",".join(RANGES) + "} (no preprocess.json "
                "beside the artifact; edgepipe never guesses how a foreign model scales its inputs)", "none"))
        h, w = size or model_hwc[:2]
        if not (0 < int(h) <= MAX_INPUT_SIDE and 0 < int(w) <= MAX_INPUT_SIDE):
            raise InputError(expected_received("--size", f"height and width in 1..{MAX_INPUT_SIDE}", (h, w)))
        spec = PreprocessSpec(int(h), int(w), model_hwc[2], preprocessing, interpolation or "bilinear",
                              color or ("grayscale" if model_hwc[2] == 1 else "rgb"))
    for name, value, allowed_values in (("preprocessing", spec.mode, tuple(RANGES)), ("color", spec.color, COLORS),
                                        ("interpolation", spec.interpolation, INTERPOLATIONS)):
        if value not in allowed_values:
            raise InputError(expected_received(name, f"one of {list(allowed_values)}", repr(value)))
    if tuple(spec.shape) != tuple(model_hwc):
        raise InputError(expected_received(f"preprocessing for {Path(artifact).name!r}",
                                           f"the model's input size (H, W, C) = {tuple(model_hwc)}",
                                           f"{tuple(spec.shape)}"))
    return spec


def resolve_labels(artifact: Path, labels: Path | None, data: str) -> list[str]:
    from edgepipe.core.labels import read_labels

    if labels is not None:
        return read_labels(labels)
    beside = Path(artifact).parent / "labels.txt"
    if beside.is_file():
        return read_labels(beside)
    d = Path(data)
    if d.is_dir():
        subdirs = sorted(p.name for p in d.iterdir() if p.is_dir())
        if subdirs:
            stderr.print(f"[yellow]labels[/]: the sorted sub-folder names {safe(str(subdirs))}; pass --labels if "
                         "the model's class order differs", highlight=False, soft_wrap=True)
            return subdirs
    raise InputError(expected_received("labels", "--labels FILE, a labels.txt beside the artifact, or --data as a "
                                       "folder of class sub-folders", f"none for {data!r}"))


def load_images(data: str, labels: list[str], spec: PreprocessSpec, limit: int | None, threads: int = 1):
    """Preprocessed images, labels and file paths from a folder or a CSV (deterministic subset)."""
    from edgepipe.calibration.dataset import load_subset
    from edgepipe.config.schema import SplitSpec, Subset

    with bar(f"loading images from {safe(Path(data).name)}", None, stderr) as advance:
        return load_subset(Subset(source=str(data), split="all", size=limit), SplitSpec(), labels, spec,
                           f"data {data!r}", advance, workers=threads)


def _labels_in(data: Path) -> list[str]:
    """Whatever class names the data itself uses (sub-folders, or the CSV's label column)."""
    from edgepipe.calibration.sources import csv_rows

    if data.is_dir():
        return sorted(p.name for p in data.iterdir() if p.is_dir())
    if data.suffix.lower() == ".csv" and not data.is_dir():
        return sorted({label for _, _, label in csv_rows(data)} - {""})
    return []


def _scores(path: Path, fmt: str, threads: int, limits: Limits | None, images) -> np.ndarray:
    with bar(f"{safe(Path(path).name)}: {len(images)} images", len(images), stderr) as advance:
        return _foreign(path, fmt, threads, limits, images, advance)["scores"]


def validate(artifact: Path, data: str, labels: Path | None = None, preprocess: Path | None = None,
             size=None, preprocessing=None, color=None, interpolation=None, reference: Path | None = None,
             threads: int = 2, limit: int | None = None, max_top1_drop: float | None = None,
             timeout: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB) -> dict:
    from edgepipe.core.versions import host_facts
    from edgepipe.validators import parity as parity_mod
    from edgepipe.validators.accuracy import accuracy_metrics
    from edgepipe.validators.gates import exit_code

    if max_top1_drop is not None and reference is None:
        raise InputError(expected_received("--max-top1-drop", "--reference OTHER_ARTIFACT to measure a drop against",
                                           "no --reference"))
    check_threads(threads)
    limits = Limits(timeout, memory_mb)
    fmt, facts = open_artifact(artifact, threads, limits)
    hwc, precision = tuple(facts["input_hwc"]), facts["precision"]
    spec = resolve_spec(artifact, hwc, preprocess, size, preprocessing, color, interpolation)
    names = resolve_labels(artifact, labels, data)
    batch = load_images(data, names, spec, limit, threads)
    if not (batch.labels >= 0).any():
        raise InputError(expected_received(f"data {data!r}", "labeled images (class sub-folders or a CSV label)",
                                           "none labeled"))
    scores = _scores(artifact, fmt, threads, limits, batch.images)
    if scores.shape[1] != len(names):
        raise InputError(expected_received(f"labels for {Path(artifact).name!r}",
                                           f"{scores.shape[1]} labels (the model's outputs)", f"{len(names)}: {names}"))
    ref_scores = ref_info = parity = None
    if reference is not None:
        rfmt, rfacts = open_artifact(reference, threads, limits)
        rhwc, rprec = tuple(rfacts["input_hwc"]), rfacts["precision"]
        if tuple(rhwc) != tuple(hwc):
            raise InputError(expected_received("--reference", f"an artifact with input {tuple(hwc)}", tuple(rhwc)))
        ref_scores = _scores(reference, rfmt, threads, limits, batch.images)
        if ref_scores.shape != scores.shape:
            raise InputError(expected_received("--reference", f"scores of shape {scores.shape}", ref_scores.shape))
        ref_info = {"path": str(reference), "format": rfmt, "precision": rprec}
        if precision != "int8" and rprec != "int8":  # parity is a float-vs-float check
            parity = parity_mod.output_parity(scores, ref_scores)
    acc = accuracy_metrics(scores, batch.labels, ref_scores, names)
    reasons = []
    if max_top1_drop is not None and acc["drop_points"] > max_top1_drop:
        lo, hi = acc["drop_ci95_points"]
        reasons.append(f"top-1 drop {acc['drop_points']:.2f} pts (95% CI {lo:+.2f}..{hi:+.2f}) "
                       f"> max_top1_drop {max_top1_drop:g}")
    if parity is not None and not parity["passed"]:
        reasons.append(f"output parity: worst cosine {parity['cosine_min']:.6f}, max |diff| {parity['max_abs']:.2e}")
    status = "failed" if reasons else "passed"
    return {"edgepipe_validate": 1, "artifact": str(artifact), "format": fmt, "precision": precision,
            "input_layout": facts["layout"], "runtime": facts["runtime"], "threads": threads,
            "data": {"source": str(data), "count": len(batch), "sha256": batch.sha256}, "labels": names,
            "preprocess": spec.as_dict(), "reference": ref_info, "accuracy": acc, "parity": parity,
            "status": status, "reasons": reasons, "environment": host_facts(), "exit_code": exit_code([status])}


def bench(artifact: Path, data: str | None, preprocess: Path | None = None, size=None, preprocessing=None,
          color=None, interpolation=None, runs: int = 50, warmup: int = 5, threads: int = 2,
          thread_sweep: list[int] | None = None, limit: int | None = 50, end_to_end: bool = True,
          max_p90_ms: float | None = None, timeout: float = DEFAULT_TIMEOUT_S,
          memory_mb: int = DEFAULT_MEMORY_MB) -> dict:
    from edgepipe.core.versions import host_facts
    from edgepipe.validators.gates import exit_code
    from edgepipe.validators.latency import SWEEP_KEYS
    from edgepipe.validators.latency_child import measure_in_child

    if data is None:
        raise InputError(expected_received("--data", "a folder of images or a CSV (bench times real, preprocessed "
                                           "images, never random tensors)", "none"))
    for t in [threads, *(thread_sweep or [])]:
        check_threads(t, "--threads" if t == threads else "--thread-sweep")
    limits = Limits(timeout, memory_mb)
    fmt, facts = open_artifact(artifact, threads, limits)
    hwc, precision, layout = tuple(facts["input_hwc"]), facts["precision"], facts["layout"]
    spec = resolve_spec(artifact, hwc, preprocess, size, preprocessing, color, interpolation)
    names = _labels_in(Path(data))  # labels do not matter for timing, only which files to read
    batch = load_images(data, names, spec, limit, threads)
    paths = list(batch.paths) if end_to_end else None
    e2e = runs if end_to_end else 0
    try:
        with bar(f"{safe(Path(artifact).name)}: {runs} timed + {e2e} end-to-end runs", runs + e2e, stderr) as adv:
            lat = measure_in_child(fmt, artifact, threads, batch.images, warmup, runs, None, spec, paths, e2e, adv,
                                   limits=limits, count_macs=True)
        if thread_sweep:
            lat["thread_sweep"] = []
            with bar(f"thread sweep {thread_sweep}", runs * len(thread_sweep), stderr) as adv:
                for t in thread_sweep:
                    r = measure_in_child(fmt, artifact, t, batch.images, warmup, runs, progress=adv, limits=limits)
                    lat["thread_sweep"].append({"threads": t, **{k: r[k] for k in SWEEP_KEYS}})
    except StageError as err:  # the user's artifact failed or hung while timed: bad input, exit 2
        raise InputError(str(err)) from None
    if lat.get("macs_per_image"):  # the p50's share of this CPU's peak, as a run's rows have it
        from edgepipe.validators.roofline import record

        roof = record(lat["p50_ms"], lat["macs_per_image"], precision, lat.get("threads") or threads, fmt=fmt)
        lat.update({"roofline": roof} if roof else {})
    reasons = []
    if max_p90_ms is not None and lat["p90_ms"] > max_p90_ms:
        reasons.append(f"p90 {lat['p90_ms']:.1f} ms > max_p90_ms {max_p90_ms:g}")
    status = "failed" if reasons else "passed"
    return {"edgepipe_bench": 1, "artifact": str(artifact), "format": fmt, "precision": precision,
            "input_layout": layout,
            "data": {"source": str(data), "count": len(batch), "sha256": batch.sha256},
            "preprocess": spec.as_dict(), "latency": lat, "status": status, "reasons": reasons,
            "environment": host_facts(), "exit_code": exit_code([status])}


def render(result: dict):
    """A terminal table for a validate or bench result."""
    from rich.table import Table

    from edgepipe.reports.numbers import fmt, fmt_range
    from edgepipe.reports.rows import roofline_basis, roofline_cell

    t = Table(title=f"{safe(Path(result['artifact']).name)} ({result['format']}, {result['precision']}): "
                    f"{result['status']}", title_justify="left", show_header=False)
    acc, lat, par = result.get("accuracy"), result.get("latency"), result.get("parity")
    if acc:
        t.add_row("images", str(acc["n_images"]))
        t.add_row("top-1", fmt(acc["top1"], ".4f"))
        t.add_row(f"top-{acc['top5_k']}", fmt(acc["top5"], ".4f"))
        t.add_row("per class", ", ".join(f"{safe(c['label'])} {fmt(c['accuracy'], '.3f')}" for c in acc["per_class"]))
        if "drop_points" in acc:
            t.add_row("Δ vs reference (pts)", f"{fmt(acc['drop_points'], '+.2f')}  95% CI "
                      f"[{fmt_range(acc['drop_ci95_points'], '+.2f', ', ')}]"
                      + ("  within noise" if acc["drop_within_noise"] else ""))
            t.add_row("agreement", fmt(acc["agreement"], ".4f"))
    if par:
        t.add_row("parity", f"worst cosine {fmt(par['cosine_min'], '.6f')}, max |diff| {fmt(par['max_abs'], '.2e')} "
                            f"(tolerance {fmt(par['max_abs_tolerance'], 'g')}) {'ok' if par['passed'] else 'FAILED'}")
    if lat:
        t.add_row("load / first ms", f"{fmt(lat['load_ms'], '.1f')} / {fmt(lat['first_ms'], '.1f')}")
        t.add_row("p50 / p90 / p99 ms", " / ".join(fmt(lat[k], ".2f") for k in ("p50_ms", "p90_ms", "p99_ms"))
                  + f"  (p50 95% CI [{fmt_range(lat['p50_ci95_ms'], '.2f', ', ')}], {lat['runs']} runs)")
        t.add_row("mean ms, throughput", f"{fmt(lat['mean_ms'], '.2f')}, {fmt(lat['throughput_ips'], '.1f')} "
                                         "images/s (batch 1)")
        if lat.get("end_to_end"):
            e = lat["end_to_end"]
            t.add_row("end to end p50 / p90 ms", f"{fmt(e['p50_ms'], '.2f')} / {fmt(e['p90_ms'], '.2f')} "
                                                 f"(preprocess p50 {fmt(e['preprocess_p50_ms'], '.2f')})")
        t.add_row("peak RSS MB", f"{fmt(lat['peak_rss_mb'], '.0f')} "
                                 f"(model + buffers {fmt(lat['rss_model_mb'], '.0f')})")
        for s in lat.get("thread_sweep") or []:
            t.add_row(f"threads {s['threads']}", f"p50 {fmt(s['p50_ms'], '.2f')} ms, p90 {fmt(s['p90_ms'], '.2f')} ms, "
                                                 f"{fmt(s['throughput_ips'], '.1f')} images/s")
        t.add_row("runtime, threads", f"{lat.get('runtime')}, {lat.get('threads')}")
        if roofline_cell(lat):
            t.add_row("roofline", f"{roofline_cell(lat)} ({roofline_basis([lat]).removeprefix('roofline: ')})")
        elif lat.get("macs_note"):
            t.add_row("roofline", safe(lat["macs_note"]))
    env = result.get("environment") or {}
    t.add_row("host", f"{env.get('cpu')} ({' '.join(env.get('isa_flags') or [])})")
    for r in result.get("reasons") or []:
        t.add_row("[red]failed[/]", safe(r))
    return t
