"""`edgepipe bench BUNDLE --device ssh://...`: the on-device runner on several boards at once.

Each board gets the bundle (content-addressed, verified on the board; `current` is not
touched; the board is locked as by `ship`, see pipeline/boards/lock.py) and runs the runner on
the bundle's shipped sample. Boards run concurrently; each
has its own status, and one failing or hanging board never stops the others (every step has
a timeout). Results are merged into a run's report.json under "devices", next to the host's
numbers for the same artifact, and report.html beside it is rendered again from the updated report.

Each row says what the board is: `isa` (the runner's platform.machine(), as manifests name it),
`emulated` (what the board said in EDGEPIPE_BOARD_EMULATED: only the test boards under qemu-user set
it) and `platform` ("arm64", "x86_64", or "arm64 (emulated)"). An emulated board's timings are the
speed of a CPU emulator on the host, so its row has no `latency`: they go to `emulated_latency`,
with a note saying they are not a device figure.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgepipe.boards.lock import DEFAULT_TIMEOUT as DEFAULT_LOCK_TIMEOUT
from edgepipe.boards.lock import BoardLock
from edgepipe.boards.remote import Device, SSHOptions
from edgepipe.boards.ship import Board, remote_dir_name, require_pubkey, verified_bundle
from edgepipe.core.errors import InputError, RemoteError

EMULATED_NOTE = "measured under emulation on the host: not a device figure"
ISA_LABELS = {"aarch64": "arm64"}


def bench_devices(bundle_path: Path, urls: list[str], opts: SSHOptions, pubkey: Path, runs: int = 50,
                  warmup: int = 5, threads: int = 2, python: str | None = None,
                  report_path: Path | None = None) -> dict:
    devices = [Device.parse(u, python) for u in urls]  # all URLs are checked before any board is contacted
    if not devices:
        raise InputError("bench: expected at least one --device ssh://... Received: none")
    require_pubkey(pubkey)
    if report_path is not None:
        load_report(Path(report_path))  # refused before any board is contacted (read again when merging)
    with verified_bundle(bundle_path, pubkey) as (bdir, manifest):
        dirname = remote_dir_name(bdir, manifest)
        args = f"--runs {int(runs)} --warmup {int(warmup)} --threads {int(threads)} --eval"
        lock_timeout = max(DEFAULT_LOCK_TIMEOUT, 2 * opts.command_timeout)

        def one(device: Device) -> dict:
            t0 = time.perf_counter()
            entry = {"device": device.label, "bundle": dirname}
            try:
                # one ship or bench per board: a concurrent ship could prune this bundle or sweep our upload
                with Board(device, opts, pubkey) as board:
                    board.preflight(bdir, manifest, dirname)  # nothing is written to a board that is not ready
                    with BoardLock(board.remote, device.python, "bench", lock_timeout) as lock:
                        board.install(bdir, dirname, board.probe(dirname))
                        lock.refresh()
                        code, out = board.runner(device.q("bundles", dirname), args, timeout=opts.command_timeout)
                entry["result"] = out
                if code == 0 and out.get("ok"):
                    entry["status"] = "ok"
                else:
                    err = out.get("error") or {}
                    entry.update(status=err.get("kind") or f"exit {code}", error=err.get("message"))
            except RemoteError as err:
                entry.update(status=err.status, error=str(err))
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            return entry

        with ThreadPoolExecutor(max_workers=min(8, len(devices))) as pool:
            entries = list(pool.map(one, devices))
        summary = {"bundle": {k: manifest.get(k) for k in ("name", "bundle_version", "target", "precision")},
                   "host": _host_numbers(manifest), "devices": [summarise(e) for e in entries],
                   "ok": all(e["status"] == "ok" for e in entries)}
        if report_path is not None:
            merge_into_report(Path(report_path), summary)
        return summary


def _host_numbers(manifest: dict) -> dict:
    lat = ((manifest.get("metrics") or {}).get("latency")) or {}
    acc = ((manifest.get("metrics") or {}).get("accuracy")) or {}
    sample = manifest.get("sample") or {}
    return {"p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"), "top1": acc.get("top1"),
            "sample_top1": sample.get("host_top1"), "runtime": lat.get("runtime"),
            "tools": manifest.get("tool_versions")}


def summarise(entry: dict) -> dict:
    """One board's row for the report: what the board is (isa, emulated, platform), its runtime and timings."""
    from edgepipe.boards.device_runner import isa_of

    out = entry.get("result") or {}
    lat, ev = out.get("latency") or {}, out.get("eval") or {}
    row = {k: entry.get(k) for k in ("device", "status", "error", "seconds", "bundle")}
    isa = isa_of(out.get("machine")) or None
    emulated = out.get("emulated") or None
    timings = {k: lat.get(k) for k in ("load_ms", "first_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "runs",
                                       "warmup")} if lat else None
    row.update({
        "runtime": out.get("runtime"), "python": out.get("python"), "numpy": out.get("numpy"),
        "machine": out.get("machine"), "isa": isa, "emulated": emulated,
        "platform": (ISA_LABELS.get(isa, isa) + (" (emulated)" if emulated else "")) if isa else None,
        "threads": out.get("threads"), "signature": (out.get("verification") or {}).get("signature"),
        "latency": None if emulated else timings,
        "sample_top1": ev.get("top1"), "agreement_with_host": ev.get("agreement_with_host"),
    })
    if emulated and timings:
        row["emulated_latency"] = {**timings, "note": f"{EMULATED_NOTE} ({emulated})"}
    return row


def device_line(row: dict) -> str:
    """One board's result for the terminal: an emulated board's milliseconds are labelled as such."""
    from edgepipe.reports.numbers import fmt

    lat, emu = row.get("latency") or {}, row.get("emulated_latency") or {}
    where = f" [{row['platform']}]" if row.get("platform") else ""
    if lat.get("p50_ms") is not None:
        timing = f" p50 {fmt(lat['p50_ms'], '.2f')} ms"
    elif emu.get("p50_ms") is not None:
        timing = f" emulated p50 {fmt(emu['p50_ms'], '.2f')} ms (not a device figure)"
    else:
        timing = ""
    return f"{row['device']}{where}: {row['status']}{timing} {row.get('error') or ''}".rstrip()


def load_report(path: Path) -> dict:
    """A run's report.json for `--report`, read and checked before any board is contacted: a JSON object
    written by `edgepipe run` ("edgepipe_report"), whose rows, environment and devices have the types the
    merge and report.html need (it is rendered once here, so a report that cannot be rendered is refused now)."""
    from pydantic import ValidationError

    from edgepipe.config.schema import format_validation_error
    from edgepipe.core import safeio
    from edgepipe.core.errors import expected_received
    from edgepipe.reports.rows import ReportRow

    label = f"--report {str(path)!r}"
    try:
        report = json.loads(safeio.read_text(path, "--report"))
    except (OSError, ValueError, RecursionError) as err:
        raise InputError(f"--report: expected a run's report.json. Received: {str(path)!r} ({err})") from err
    if not isinstance(report, dict):
        raise InputError(f"--report: expected a run's report.json (a JSON object). Received: {type(report).__name__}")
    if "edgepipe_report" not in report:
        keys = ", ".join(repr(k) for k in list(report)[:5]) or "none"
        raise InputError(expected_received(label, "a run's report.json (an object with \"edgepipe_report\", as "
                                                   "`edgepipe run` writes it)", f"an object with keys {keys}"))
    for key, types, what in (("artifacts", list, "a list of rows"), ("devices", list, "a list of rows"),
                             ("environment", dict, "an object")):
        value = report.get(key)
        if value is not None and not isinstance(value, types):
            raise InputError(expected_received(f"{label}: {key}", f"{what} or null", type(value).__name__))
    for key in ("artifacts", "devices"):
        for i, row in enumerate(report.get(key) or []):
            if not isinstance(row, dict):
                raise InputError(expected_received(f"{label}: {key}[{i}]", "an object", type(row).__name__))
            if key == "artifacts":
                try:
                    ReportRow.from_json(row)
                except ValidationError as err:
                    raise InputError(expected_received(label, "a run's report.json whose artifacts are report rows",
                                                       format_validation_error(err, f"artifacts[{i}]"))) from None
    _render(report, label)
    return report


def _render(report: dict, label: str) -> str:
    """report.html's text, or an InputError saying which part of the report it could not be rendered from."""
    from edgepipe.core.errors import expected_received
    from edgepipe.reports.html import render

    try:
        return render(report)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as err:  # ValueError: pydantic's too
        raise InputError(expected_received(label, "a run's report.json that report.html can be rendered from",
                                           f"{type(err).__name__}: {str(err)[:200]}")) from None


def merge_into_report(path: Path, summary: dict) -> None:
    """Add the boards' rows to report.json["devices"] (replacing earlier rows for the same board and
    bundle name), with the host's numbers for that artifact beside them, and re-render report.html beside it
    (pipeline/reports/html.py). The report is read again (it may have changed while the boards ran) and checked
    as before they ran; both files are rendered before either is written, and each is written atomically."""
    report = load_report(path)
    name = summary["bundle"]["name"]
    host_row = next((r for r in report.get("artifacts") or []
                     if str(r.get("artifact", "")).replace("/", "-") == name), None)
    host = dict(summary["host"])
    if host_row:
        host.update(p50_ms=(host_row.get("latency") or {}).get("p50_ms"),
                    p90_ms=(host_row.get("latency") or {}).get("p90_ms"),
                    top1=(host_row.get("accuracy") or {}).get("top1"), cpu=(report.get("environment") or {}).get("cpu"))
    keep = [d for d in report.get("devices") or []
            if not (d.get("artifact") == name and d.get("device") in {e["device"] for e in summary["devices"]})]
    for e in summary["devices"]:
        keep.append({"artifact": name, "bundle_version": summary["bundle"]["bundle_version"], "host": host, **e})
    report = {**report, "devices": keep}
    from edgepipe.core.jsonio import dumps
    from edgepipe.core.tempdirs import atomic_write_text

    text, html = dumps(report), _render(report, f"--report {str(path)!r}")  # everything rendered, then written
    atomic_write_text(path, text)
    atomic_write_text(path.with_name("report.html"), html)  # the page shows the same rows as report.json
