"""Bundles from the tiny Xception's INT8 artifact: manifest, signature, versions, tamper and
unsafe-archive refusal on the host (issue 7 rows 13 and 14)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
from typer.testing import CliRunner

from edgepipe.boards.archive import pack, unpack
from edgepipe.boards.bundle import read_manifest
from edgepipe.boards.signing import keygen
from edgepipe.cli.app import app
from edgepipe.core.errors import BundleError
from edgepipe.core.hashing import sha256_file
from tests.fixtures.hostile import hand_made_artifact

runner = CliRunner()


def _bundle(run, store, *extra):
    res = runner.invoke(app, ["bundle", str(run["artifact"]), "--out", str(store), "--key", str(run["key"]), *extra],
                        catch_exceptions=False)
    return res


@pytest.fixture(scope="module")
def built(tiny_int8_run, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    res = _bundle(tiny_int8_run, store, "--tar")
    assert res.exit_code == 0, res.output
    return {"store": store, "dir": store / "tflite-arm-int8-v1", "run": tiny_int8_run}


def _verify(path, pub):
    return runner.invoke(app, ["verify", str(path), "--pubkey", str(pub)], catch_exceptions=False)


def test_manifest_lists_every_file_with_provenance(built):
    d, run = built["dir"], built["run"]
    m = read_manifest(d)
    record = json.loads((run["artifact"] / "artifact.json").read_text())
    paths = {f["path"] for f in m["files"]}
    assert paths == {"model_int8.tflite", "labels.txt", "preprocess.json", "artifact.json", "README.md",
                     "sample/images.npy", "sample/labels.npy"}  # README.md: the artifact's model card
    assert (d / "README.md").read_text().startswith("---\n")  # YAML front matter travels with the bundle
    for f in m["files"]:
        assert f["sha256"] == sha256_file(d / f["path"]) and f["size"] == (d / f["path"]).stat().st_size
    assert m["bundle_version"] == 1 and m["target"] == "tflite-arm" and m["precision"] == "int8"
    assert m["source_model_sha256"] == record["source_model_sha256"]
    assert m["source_model_key"] == record["source_model_key"] and len(m["source_model_key"]) == 64
    assert m["calibration_sha256"] == record["calibration_sha256"]
    assert m["metrics"]["accuracy"]["top1"] == record["metrics"]["accuracy"]["top1"]
    assert m["input"]["shape"] == [1, 71, 71, 3] and m["input"]["preprocess"]["mode"] == "xception"
    assert m["tool_versions"]["tensorflow"] and m["requires"] == {"ai_edge_litert": "1.0", "tflite_runtime": "2.11"}
    images, labels = np.load(d / "sample" / "images.npy"), np.load(d / "sample" / "labels.npy")
    assert images.shape == (6, 71, 71, 3) and images.dtype == np.float32  # 2 per class, from the test split
    assert list(labels) == [0, 0, 1, 1, 2, 2] and images.min() >= -1.0 and images.max() <= 1.0
    assert len(m["sample"]["host_predictions"]) == 6 and m["sample"]["split"] == "test"
    assert (d / "manifest.sig").is_file() and "manifest.sig" not in paths


def test_verify_accepts_the_bundle_and_its_archive(built, tmp_path):
    pub = built["run"]["pub"]
    assert _verify(built["dir"], pub).exit_code == 0
    archive = built["store"] / "tflite-arm-int8-v1.tar"
    res = _verify(archive, pub)
    assert res.exit_code == 0 and "signature valid" in res.output
    assert (unpack(archive, tmp_path) / "manifest.json").read_bytes() == (built["dir"] / "manifest.json").read_bytes()


def test_versions_count_up_and_never_repeat(built):
    run, store = built["run"], built["store"]
    res = _bundle(run, store)
    assert res.exit_code == 0 and read_manifest(store / "tflite-arm-int8-v2")["bundle_version"] == 2
    res = _bundle(run, store, "--version", "2")
    assert res.exit_code == 2 and "greater than 2" in res.output
    assert not any(p.name.startswith(".tmp") for p in store.iterdir())


def test_model_card_is_bundled_when_present(built, tmp_path, tiny_assets):
    art = tmp_path / "tflite-arm-int8"
    shutil.copytree(built["run"]["artifact"], art)
    (art / "README.md").write_text("# Model card\n")
    res = runner.invoke(app, ["bundle", str(art), "--out", str(tmp_path / "s"), "--key", str(built["run"]["key"]),
                              "--samples", str(tiny_assets["data"]), "--per-class", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = read_manifest(tmp_path / "s" / "tflite-arm-int8-v1")
    assert m["model_card"] == "README.md" and "README.md" in {f["path"] for f in m["files"]}
    assert m["sample"]["n"] == 3 and m["sample"]["split"] == "all"


def test_bad_artifact_refused_without_output(built, tmp_path):
    art = tmp_path / "tflite-arm-int8"
    shutil.copytree(built["run"]["artifact"], art)
    with open(art / "model_int8.tflite", "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    res = runner.invoke(app, ["bundle", str(art), "--out", str(tmp_path / "s"), "--key", str(built["run"]["key"])])
    assert res.exit_code == 2 and "expected model sha256" in res.output
    assert not (tmp_path / "s").exists()


def _tamper(d, how):
    if how == "changed byte":
        with open(d / "model_int8.tflite", "r+b") as f:
            f.seek(1000)
            b = f.read(1)
            f.seek(1000)
            f.write(bytes([b[0] ^ 0x01]))
        return "model_int8.tflite"
    if how == "extra file":
        (d / "extra.bin").write_bytes(b"x")
        return "extra.bin"
    if how == "swapped labels":
        lines = (d / "labels.txt").read_text().splitlines()
        (d / "labels.txt").write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
        return "labels.txt"
    if how == "edited manifest":
        m = json.loads((d / "manifest.json").read_text())
        m["bundle_version"] += 10  # e.g. to dodge the board's downgrade check
        (d / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))
        return "manifest.sig"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["changed byte", "extra file", "swapped labels", "edited manifest"])
def test_tampered_bundle_refused_on_host(built, tmp_path, how):
    d = tmp_path / "b"
    shutil.copytree(built["dir"], d)
    named = _tamper(d, how)
    res = _verify(d, built["run"]["pub"])
    assert res.exit_code == 2 and named in res.output, res.output


def test_bundle_signed_by_another_key_refused(built, tmp_path):
    _, other_pub = keygen(tmp_path / "other")
    res = _verify(built["dir"], other_pub)
    assert res.exit_code == 2 and "does not match" in res.output


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = target
                tar.addfile(info)
    return path


@pytest.mark.parametrize("members,needle", [
    ([("b/ok", "file", None), ("b/../../evil", "file", None)], "'b/../../evil'"),
    ([("/etc/evil", "file", None)], "'/etc/evil'"),
    ([("b/ok", "file", None), ("b/link", "sym", "/etc/passwd")], "a link: 'b/link'"),
    ([("b/ok", "file", None), ("b/hard", "hard", "b/ok")], "a link: 'b/hard'"),
    ([("b/ok", "file", None), ("c/ok", "file", None)], "one top-level"),
    # a lone file where the bundle directory belongs (found by the property test's random pass: a traceback before)
    ([("b", "file", None)], "a file 'b' at the top level"),
    ([("b/ok", "file", None), ("c", "file", None)], "a file 'c' at the top level"),
])
def test_archive_with_escaping_paths_or_links_refused_before_writing(tmp_path, members, needle):
    archive = _tar(tmp_path / "evil.tar", members)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError) as err:
        unpack(archive, dest)
    assert needle in str(err.value)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil").exists()


def test_pack_refuses_links(built, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(built["dir"], d)
    (d / "sample" / "link").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="links"):
        pack(d, tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()
    assert _verify(d, built["run"]["pub"]).exit_code == 2


# ---- --out: a store that cannot be made, or one inside the bundle's own inputs --------------------------------
def _bundle_to(art, out, samples=True):
    res = runner.invoke(app, ["bundle", str(art["dir"]), "--out", str(out), "--key", str(art["key"]),
                              *(["--samples", str(art["samples"])] if samples else [])])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception  # no traceback
    return res


def test_a_store_that_cannot_be_made_is_exit_2_naming_why(tmp_path):
    """A dangling link, a path under a file, a path /proc cannot hold: FileExistsError, NotADirectoryError,
    FileNotFoundError tracebacks (exit 1) before; keygen and init already said what was wrong."""
    import os

    from tests.fixtures.hostile import snapshot

    art = hand_made_artifact(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "afile").write_text("precious")
    cases = [("dangling", "expected a bundle store folder (new or existing). Received: a dangling symbolic link"),
             ("afile/sub", "expected a bundle store folder (new or existing). Received: Not a directory")]
    before = snapshot(tmp_path)
    for out, said in cases:
        res = _bundle_to(art, tmp_path / out)
        assert res.exit_code == 2 and f"--out '{tmp_path / out}': {said}" in res.output, res.output
        assert snapshot(tmp_path) == before
    assert not (tmp_path / "nowhere").exists() and (tmp_path / "afile").read_text() == "precious"
    if os.path.isdir("/proc/self"):  # the store cannot be created there (mkdir: ENOENT, also as root)
        res = _bundle_to(art, "/proc/edgepipe-bundle-test/store")
        assert res.exit_code == 2 and ("--out '/proc/edgepipe-bundle-test/store': expected a writable bundle store "
                                       "folder. Received: No such file or directory") in res.output, res.output
        assert snapshot(tmp_path) == before


def test_a_store_inside_the_bundles_own_inputs_is_refused_before_anything_is_written(tmp_path):
    """--out the --samples folder put the bundle among the classes (the next bundle, validate or run with them
    then failed on an unknown class folder); --out the artifact directory put it among the artifact's files."""
    from tests.fixtures.hostile import snapshot

    art = hand_made_artifact(tmp_path)
    cases = [(art["samples"], "it is the same path as the --samples data"),
             (art["samples"] / "red", "it is inside the --samples data"),
             (art["dir"], "it is the same path as the artifact directory"),
             (art["dir"] / "bundles", "it is inside the artifact directory"),
             (art["key"].parent, "it is the same path as the signing key's folder")]
    before = snapshot(tmp_path)
    for out, said in cases:
        res = _bundle_to(art, out)
        assert res.exit_code == 2, res.output
        assert f"--out '{out}': expected a bundle store apart from every input; {said}" in res.output, res.output
        assert snapshot(tmp_path) == before
    (tmp_path / "loop").symlink_to("loop")  # an input that is a link loop: named by its reader, no traceback
    res = runner.invoke(app, ["bundle", str(art["dir"]), "--out", str(tmp_path / "store"), "--key", str(art["key"]),
                              "--samples", str(tmp_path / "loop")])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 2 and "(a symbolic-link loop)" in res.output and not (tmp_path / "store").exists()
    # without --samples the sample comes from the validation data named by the run's report: an input too
    (tmp_path / "run" / "report.json").write_text(json.dumps(
        {"data": {"validation": {"source": str(art["samples"]), "split": "all"}}}))
    before = snapshot(tmp_path)
    res = _bundle_to(art, art["samples"] / "bundles", samples=False)
    assert res.exit_code == 2 and (f"--out '{art['samples'] / 'bundles'}': expected a bundle store apart from every "
                                   "input; it is inside the run's validation data") in res.output, res.output
    assert snapshot(tmp_path) == before
    # a store that holds the inputs is fine: a bundle only adds its own new folder
    res = _bundle_to(art, tmp_path)
    assert res.exit_code == 0 and (tmp_path / "tflite-arm-fp32-v1" / "manifest.json").is_file(), res.output
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("tflite-arm-fp32-v1")} == before
