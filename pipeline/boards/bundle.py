"""Bundles: a published artifact + manifest.json (every file's sha256 and size) + a signature.

Layout of `<out>/<target>-<precision>-v<N>/`:

    model file(s) the board runs, labels.txt, preprocess.json, artifact.json, README.md (model card, if any)
    (not: host-only files such as an OpenVINO CPU blob, HOST_ONLY; the manifest's "left_out" lists them)
    sample/images.npy, sample/labels.npy   a few preprocessed labeled images for on-board eval
    manifest.json                          signed file set + provenance + metrics + version
    manifest.sig                           Ed25519 signature of manifest.json's bytes (not in the set)

Verification (host and board) is `device_runner.verify_bundle`: one implementation, stdlib only,
so the board checks exactly what the host checks. Which runtimes a bundle asks the board for
(`requires`) and which board CPUs it runs on (`isa`: a list, or null for any ISA; a manifest
without it is read as any) come from the formats table (`Format.board_requires`, `board_isas`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgepipe import formats
from edgepipe.boards import device_runner
from edgepipe.boards.signing import load_private, write_signature
from edgepipe.core import safeio, tempdirs
from edgepipe.core.artifacts import CARD_NAME, LABELS_NAME, PREPROCESS_NAME, RECORD_NAME
from edgepipe.core.errors import BundleError, InputError, OutputWriteError, expected_received
from edgepipe.core.hashing import sha256_file
from edgepipe.core.overlap import INSIDE, SAME, overlap
from edgepipe.core.versions import tool_versions

MANIFEST = device_runner.MANIFEST
SIGNATURE = device_runner.SIGNATURE
ARTIFACT_FILES = (LABELS_NAME, PREPROCESS_NAME, RECORD_NAME)  # copied into every bundle
MODEL_CARD = CARD_NAME
SAMPLE_PER_CLASS = 2
# Artifact files that only the host that built them can use: they stay out of bundles (the manifest's
# "left_out" names them). The on-board runner compiles the OpenVINO IR (.xml + .bin) for the board's own
# CPU; a CompiledModel.export_model blob is tied to the ISA and OpenVINO version it was compiled with
# (targets/openvino_compile.py) and the runner never imports it.
HOST_ONLY = {".blob": "OpenVINO model compiled for the host's CPU and OpenVINO version (export_model); the board "
                      "compiles the IR itself",
             ".compile.json": "what the host's OpenVINO plugin chose when it compiled that blob"}
_VERSION_DIR = re.compile(r"^(?P<name>.+)-v(?P<version>\d+)$")


def build_bundle(artifact_dir: Path, out: Path, key: Path, version: int | None = None,
                 samples: str | None = None, per_class: int = SAMPLE_PER_CLASS, threads: int = 2) -> Path:
    """Bundle a published artifact directory; returns the new bundle directory (written atomically)."""
    artifact_dir, out, key = Path(artifact_dir), Path(out), Path(key)
    _check_store(out)
    load_private(key)  # a missing or wrong key fails before any work
    _apart_from_inputs(out, {"artifact directory": artifact_dir, "--samples data": samples})
    _apart_from_inputs(out, {"signing key's folder": key.parent}, inside=False)
    record = _read_artifact(artifact_dir)
    name = artifact_dir.name
    latest = latest_version(out, name)
    if version is None:
        version = latest + 1
    elif version <= latest:
        raise BundleError(f"bundle version: expected a version greater than {latest} (the newest {name} bundle in "
                          f"{str(out)!r}). Received: {version}")
    from edgepipe.core.labels import read_labels

    labels = read_labels(artifact_dir / LABELS_NAME)
    spec = _read_spec(artifact_dir / PREPROCESS_NAME)
    images, sample_labels, sample_info = select_sample(artifact_dir, labels, spec, samples, per_class)
    if samples is None:  # the run's validation data (named by its report.json) is an input as well
        _apart_from_inputs(out, {"run's validation data (the default --samples)": sample_info["source"]})
    model_path = artifact_dir / record["files"][0]
    host_preds = _host_predictions(record["format"], model_path, images, threads)

    final = out / f"{name}-v{version}"
    if final.exists() or final.is_symlink():
        raise BundleError(expected_received(f"bundle store {str(out)!r}", f"no {final.name!r} yet (bundles are never "
                                            "overwritten)", f"{str(final)!r} exists and is not a bundle "
                                            "(no manifest.json)" if not (final / MANIFEST).is_file() else "it exists"))
    # the bundle is built in a marked folder (edgepipe.core.tempdirs), removed however this ends
    with _writing_store(out), tempdirs.scratch_beside(final) as shell:
        tmp = shell / final.name  # inside it, so the marker is never part of the bundle's file set
        (tmp / "sample").mkdir(parents=True)
        kept, left_out = board_files(record["files"])
        copied = kept + list(ARTIFACT_FILES)
        if (artifact_dir / MODEL_CARD).is_file():
            copied.append(MODEL_CARD)
        for f in copied:
            shutil.copyfile(artifact_dir / f, tmp / f)
        np.save(tmp / "sample" / "images.npy", images)
        np.save(tmp / "sample" / "labels.npy", sample_labels)
        top1 = float(np.mean(host_preds == sample_labels)) if len(sample_labels) else None
        manifest = {
            "edgepipe_bundle": device_runner.BUNDLE_FORMAT,
            "name": name,
            "bundle_version": version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "target": record["target"],
            "precision": record["precision"],
            "model": {"file": record["files"][0], "files": kept, "format": record["format"],
                      "sha256": record["sha256"]},
            "left_out": left_out,  # artifact files the board never uses (HOST_ONLY): not in the bundle
            "input": {"shape": [1, spec["height"], spec["width"], spec["channels"]], "preprocess": spec},
            "labels": labels,
            "source_model_sha256": record.get("source_model_sha256"),
            "source_model_key": record.get("source_model_key"),
            "calibration_sha256": record.get("calibration_sha256"),
            "tool_versions": {**record.get("tool_versions", {}), **tool_versions("numpy", "ai-edge-litert",
                                                                                 "openvino")},
            "metrics": record.get("metrics"),
            "status": record.get("status"),
            "requires": _board_requires(record["format"]),
            "isa": _board_isas(record["format"]),
            "sample": {"images": "sample/images.npy", "labels": "sample/labels.npy", "n": int(len(images)),
                       "host_predictions": [int(p) for p in host_preds], "host_top1": top1, **sample_info},
            "model_card": MODEL_CARD if MODEL_CARD in copied else None,
        }
        seal(tmp, manifest, key)
        verify(tmp, None)  # the file set we just wrote must verify before it is published
        os.rename(tmp, final)  # never replaces: a bundle that appeared meanwhile makes this fail
    return final


STORE_EXPECTED = "a bundle store folder (new or existing)"


def _check_store(out: Path) -> None:
    """--out is a folder or a new path: not a file, a device, a dangling link or a link loop (refused before any
    work; a path that cannot be created, e.g. under a file or in /proc, is named when the store is made)."""
    import errno

    label = f"--out {str(out)!r}"
    try:
        st = os.stat(out)
    except OSError as err:
        if err.errno == errno.ENOENT and not os.path.islink(out):
            return  # a new store
        raise BundleError(expected_received(label, STORE_EXPECTED, safeio.os_problem(out, err))) from None
    except ValueError:  # a NUL byte (from the API: a command line cannot hold one)
        raise BundleError(expected_received(label, STORE_EXPECTED, safeio.NUL_PATH)) from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "an existing file" if stat.S_ISREG(st.st_mode) else safeio.kind_of(st.st_mode)
        raise BundleError(expected_received(label, STORE_EXPECTED, kind))


def _apart_from_inputs(out: Path, inputs: dict[str, str | Path | None], inside: bool = True) -> None:
    """The store is never one of the bundle's input folders nor (`inside`) in one: a bundle folder in the artifact
    directory is lost when the next run republishes the artifact, one among the --samples classes is an unknown
    class to the next bundle, validate or run; and bundles (copied, archived, shared) never sit beside the private
    key. The key's folder is refused only as the store itself: with `--key ./edgepipe.key`, every store under
    the current folder would be inside it. A store that contains an input is fine: a bundle only adds a new
    `<name>-v<N>` folder to it, never replaces or removes anything. As `run` refuses an output folder overlapping
    its inputs (edgepipe.engine.outdir.check_output_dir)."""
    from edgepipe.calibration.sources import EXAMPLES

    for what, path in inputs.items():
        where = None if path is None or str(path) in EXAMPLES else overlap(out, path, contains=False)
        if where == SAME or (inside and where == INSIDE):
            raise InputError(expected_received(f"--out {str(out)!r}", f"a bundle store apart from every input; it "
                                               f"{where} the {what}", f"{what} {str(path)!r}; choose another --out"))


class _writing_store:
    """Make the store folder (with its parents) and turn an OSError while the bundle is written into an
    OutputWriteError naming --out; the folders made here are removed again if nothing was published."""

    def __init__(self, out: Path):
        self.out, self.made = out, []

    def __enter__(self):
        d = self.out
        while not (d.exists() or d.is_symlink()) and d != d.parent:
            self.made.append(d)
            d = d.parent
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            self._undo()
            self._fail(err)
        return self

    def __exit__(self, kind, err, tb):
        if err is None:
            return False
        self._undo()
        if isinstance(err, OSError):
            self._fail(err)
        return False

    def _undo(self):
        for d in self.made:  # deepest first; only the empty folders this bundle made
            try:
                d.rmdir()
            except OSError:
                break

    def _fail(self, err: OSError):
        raise OutputWriteError(expected_received(f"--out {str(self.out)!r}", "a writable bundle store folder",
                                                 f"{err.strerror or err} ({err.filename or self.out}); nothing was "
                                                 "written")) from None


def seal(bundle_dir: Path, manifest: dict, key: Path) -> dict:
    """(Re)compute the manifest's file list from the directory, write it, and sign its bytes."""
    bundle_dir = Path(bundle_dir)
    files, links = device_runner.bundle_files(str(bundle_dir))
    if links:
        raise BundleError(f"bundle {str(bundle_dir)!r}: expected regular files only. Received links: {links}")
    manifest = dict(manifest)
    manifest["files"] = [{"path": rel, "sha256": sha256_file(bundle_dir / rel),
                          "size": (bundle_dir / rel).stat().st_size}
                         for rel in files if rel not in device_runner.UNSIGNED]
    data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    (bundle_dir / MANIFEST).write_bytes(data)
    write_signature(bundle_dir, data, key, SIGNATURE)
    return manifest


def board_files(files: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the artifact's files a board runs, {left-out file: why}). The model file itself always goes."""
    kept, left = [files[0]], {}
    for f in files[1:]:
        why = next((w for suffix, w in HOST_ONLY.items() if f.endswith(suffix)), None)
        if why:
            left[f] = why
        else:
            kept.append(f)
    return kept, left


def verify(bundle_dir: Path, pubkey: Path | None) -> dict:
    """Every file against the manifest and, with a trusted public key, the signature. Raises BundleError."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle: expected a bundle directory or .tar archive. Received: {str(bundle_dir)!r}")
    try:
        manifest, result = device_runner.verify_bundle(str(bundle_dir), str(pubkey) if pubkey else None)
    except device_runner.RunnerError as err:
        raise BundleError(f"bundle {str(bundle_dir)!r} refused: {err}") from err
    if pubkey is not None and result["signature"] != "valid":
        raise BundleError(f"bundle {str(bundle_dir)!r}: expected a valid signature. Received: {result['signature']}")
    return {"manifest": manifest, **result}


def read_manifest(bundle_dir: Path) -> dict:
    try:
        return json.loads(safeio.read_text(Path(bundle_dir) / MANIFEST, "bundle manifest"))
    except (OSError, ValueError, RecursionError, InputError) as err:
        raise BundleError(f"bundle {str(bundle_dir)!r}: expected a readable {MANIFEST}. Received: {err}") from None


def latest_version(out: Path, name: str) -> int:
    """Highest bundle_version among `<out>/<name>-v<N>/` (0 if none): new bundles count up from it."""
    best = 0
    if Path(out).is_dir():
        for d in Path(out).iterdir():
            m = _VERSION_DIR.match(d.name)
            if m and m["name"] == name and (d / MANIFEST).is_file():
                best = max(best, int(m["version"]))
    return best


def select_sample(artifact_dir: Path, labels: list[str], spec: dict, samples: str | None,
                  per_class: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The first `per_class` images of each class from the run's validation split (or from `samples`)."""
    from edgepipe.calibration.preprocess import PreprocessSpec
    from edgepipe.calibration.sources import open_source
    from edgepipe.calibration.splits import stratified_split

    if samples is not None:
        source, split, splits = samples, "all", None
    else:
        report_path = artifact_dir.parent.parent / "report.json"
        try:
            report = json.loads(safeio.read_text(report_path, "run report"))
            val, splits = report["data"]["validation"], report["data"].get("splits")
            source, split = val["source"], val["split"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError, InputError) as err:
            raise BundleError(f"sample images: expected the run's report {str(report_path)!r} naming the validation "
                              f"data, or --samples SOURCE. Received: {err}") from err
        if split != "all" and splits is None:
            raise BundleError(f"sample images: expected split parameters in {str(report_path)!r} (written by this "
                              "edgepipe version). Received: none; pass --samples SOURCE")
    records = open_source(source, labels)
    all_labels = np.array([r.label for r in records], dtype=np.int64)
    if split == "all":
        idx = np.arange(len(records))
    else:
        idx = stratified_split(all_labels, splits["seed"], splits["calibration"], splits["test_fraction"])[split]
    chosen = [int(i) for c in range(len(labels)) for i in idx[all_labels[idx] == c][:per_class]]
    if not chosen:
        raise InputError(f"sample images: expected labeled images in split {split!r} of {source!r}. Received: 0")
    pspec = PreprocessSpec(**spec)
    images = np.stack([pspec.load(records[i].path) for i in chosen]).astype(np.float32)  # InputError if unreadable
    return images, all_labels[chosen], {"source": source, "split": split}


def _read_json(path: Path, what: str):
    from edgepipe.core import safeio

    try:
        return json.loads(safeio.read_text(path, what))
    except (ValueError, RecursionError) as err:
        raise InputError(expected_received(f"{what} {str(path)!r}", "a JSON document", str(err)[:200])) from None


RECORD_TYPES = {"files": list, "target": str, "format": str, "precision": str, "sha256": str}


def _read_artifact(artifact_dir: Path) -> dict:
    if not artifact_dir.is_dir():
        raise InputError(f"artifact: expected a published artifact directory (<output>/artifacts/<name>/). "
                         f"Received: {str(artifact_dir)!r}")
    record = _read_json(artifact_dir / RECORD_NAME, "artifact record")
    label = f"artifact record {str(artifact_dir / RECORD_NAME)!r}"
    if not isinstance(record, dict):
        raise InputError(expected_received(label, "a JSON object", type(record).__name__))
    wrong = {k: type(record.get(k)).__name__ for k, t in RECORD_TYPES.items() if not isinstance(record.get(k), t)}
    if wrong or not record["files"] or not all(isinstance(f, str) for f in record["files"]):
        raise InputError(expected_received(label, "keys files (a non-empty list of file names), target, format, "
                                           "precision, sha256 (strings)", f"wrong or missing: {wrong or 'files'}"))
    for f in list(record["files"]) + list(ARTIFACT_FILES):
        p = artifact_dir / f
        if not device_runner.safe_relpath(f) or not p.exists() or stat.S_ISLNK(p.lstat().st_mode):
            raise InputError(f"artifact {str(artifact_dir)!r}: expected a regular file {f!r}. Received: "
                             f"{'a link' if p.is_symlink() else 'none'}")
    from edgepipe.core.artifacts import Artifact

    fresh = Artifact.from_files("x", record["target"], record["format"], record["precision"],
                                artifact_dir / record["files"][0])
    if fresh.sha256 != record["sha256"]:
        raise BundleError(f"artifact {str(artifact_dir)!r}: expected model sha256 {record['sha256']} "
                          f"(artifact.json). Received: {fresh.sha256}")
    return record


def _read_spec(path: Path) -> dict:
    from dataclasses import fields

    from edgepipe.calibration.preprocess import PreprocessSpec

    spec = _read_json(path, "preprocess spec")
    allowed = {f.name for f in fields(PreprocessSpec)}
    if not isinstance(spec, dict) or not {"height", "width"} <= set(spec) <= allowed or not all(
            isinstance(spec.get(k, 3), int) and 0 < spec.get(k, 3) <= 4096 for k in ("height", "width", "channels")):
        raise InputError(expected_received(f"preprocess spec {str(path)!r}",
                                           f"a JSON object with keys from {sorted(allowed)}", repr(spec)[:200]))
    return spec


def _host_predictions(fmt: str, model_path: Path, images: np.ndarray, threads: int) -> np.ndarray:
    """The host's top-1 on the sample (the format's host runner): the board's smoke test compares against these."""
    from edgepipe.formats.runners import open_runner

    runner = open_runner(fmt, model_path, threads, layout="nhwc")  # edgepipe's own artifacts are NHWC
    return np.array([int(np.argmax(runner.predict(x))) for x in images], dtype=np.int64)


def _board_isas(fmt: str) -> list[str] | None:
    """The board CPUs a bundle of `fmt` runs on (None: any; also what a manifest without "isa" means)."""
    known = formats.find(fmt)
    return list(known.board_isas) if known and known.board_isas else None


def _board_requires(fmt: str) -> dict:
    """The oldest on-board runtimes a bundle of `fmt` asks for (the formats table; none for an unknown format)."""
    known = formats.find(fmt)
    return known.board_requires() if known else {}
