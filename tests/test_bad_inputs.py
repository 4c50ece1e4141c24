"""Rows 5, 8, 9, 12: wrong input shape/dtype/layout, preprocessing mismatch, labels that do not fit
the model, and a second run on one output directory (fails naming the holder, or waits)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from edgepipe.calibration import checks
from edgepipe.cli.app import app
from edgepipe.core.errors import InputError
from edgepipe.core.labels import check_outputs, read_labels
from edgepipe.engine.outdir import locked_output
from edgepipe.formats.runners import KerasRunner, OpenVINORunner, TFLiteRunner
from tests.fixtures.configs import tiny_config, write_config
from tests.fixtures.locks import lock_held_by_child
from tests.fixtures.model_files import TINY_TFLITE, tiny_ir

pytestmark = pytest.mark.heavy(seconds=15)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

runner = CliRunner()


def test_config_path_with_an_unknown_user_is_a_config_error(tmp_path):
    from edgepipe.config.schema import load_config
    from edgepipe.core.errors import ConfigError

    p = tmp_path / "p.yaml"
    p.write_text("model: {path: ~nosuchuser/m.keras}\ntargets: [{name: tflite-arm}]\n"
                 "data: {labels: [a, b], calibration: {source: d, split: all}, validation: {source: d, split: all}}\n")
    with pytest.raises(ConfigError, match=r"expected '~' or '~user' with a known home directory\. "
                                          r"Received: an unknown user '~nosuchuser'"):
        load_config(p)


# ---- row 5: runners never reshape, transpose or cast -------------------------------------------
def test_tflite_runner_refuses_wrong_shape_layout_and_dtype():
    r = TFLiteRunner(TINY_TFLITE, 1)
    assert r.predict(np.zeros((8, 8, 3), np.float32)).shape == (4,)
    with pytest.raises(InputError, match=r"expected shape \(1, 8, 8, 3\) \(NHWC\)\. Received: \(1, 3, 8, 8\)"):
        r.predict(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(InputError, match=r"expected a preprocessed float32 image .*Received: dtype uint8"):
        r.predict(np.zeros((8, 8, 3), np.uint8))


def test_openvino_runner_names_a_channels_first_model(tmp_path):
    r = OpenVINORunner(tiny_ir(tmp_path), 1)  # the ONNX-born IR is NCHW (1, 3, 8, 8)
    assert r.predict(np.zeros((3, 8, 8), np.float32)).shape == (4,)
    with pytest.raises(InputError, match=r"expected shape \(1, 3, 8, 8\) \(NCHW: the model is channels-first, "
                                         r"edgepipe feeds NHWC\)\. Received: \(1, 8, 8, 3\)"):
        r.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InputError, match="Received: dtype float64"):
        r.predict(np.zeros((3, 8, 8)))


def test_keras_runner_checks_single_images_and_batches(tiny_assets):
    import keras

    r = KerasRunner(keras.saving.load_model(tiny_assets["model"], compile=False))
    with pytest.raises(InputError, match=r"expected shape \(1, 71, 71, 3\).*Received: \(1, 64, 64, 3\)"):
        r.predict(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputError, match=r"Received: \(1, 3, 71, 71\)"):
        r.predict_batch(np.zeros((2, 3, 71, 71), np.float32))


def test_every_runner_checks_its_input():
    """A guard for runners added later (in a format's module of the formats table or a target's module): each
    `predict` must go through `check_input`, the one shape/dtype/layout check that never reshapes."""
    import importlib
    import inspect

    from edgepipe import formats, targets

    modules = [*(f.load() for f in formats.FORMATS),
               *(importlib.import_module(t.module) for t in targets.REGISTRY.values())]
    runners = {c for m in modules for _, c in inspect.getmembers(m, inspect.isclass)
               if c.__module__ == m.__name__ and callable(getattr(c, "predict", None))}
    assert {"TFLiteRunner", "OpenVINORunner", "KerasRunner", "SavedModelRunner"} <= {c.__name__ for c in runners}
    for cls in runners:
        assert "check_input(" in inspect.getsource(cls.predict), f"{cls.__name__}.predict does not call check_input"


# ---- row 8: preprocessing mismatch ---------------------------------------------------------------
@pytest.mark.parametrize("scale, guess", [
    (lambda x: x * 255.0, "raw"),
    (lambda x: (x - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225]), "imagenet"),
])
def test_data_statistics_name_the_preprocessing_they_look_like(scale, guess):
    unit = np.random.default_rng(0).uniform(0, 1, (6, 16, 16, 3)).astype(np.float32)
    with pytest.raises(InputError, match=rf"expected values in \[-1, 1\] for preprocessing 'xception'.*"
                                         rf"looks like '{guess}' preprocessing, a preprocessing mismatch"):
        checks.check_range(scale(unit), "xception", "calibration data")
    checks.check_range(unit * 2 - 1, "xception", "calibration data")


def test_reference_at_chance_is_reported_as_a_likely_preprocessing_mismatch():
    labels = np.repeat([0, 1, 2], 20)
    collapsed = np.tile([0.9, 0.05, 0.05], (60, 1))  # everything predicted as class 0
    with pytest.raises(InputError, match=r"expected FP32 reference top-1 clearly above chance.*Received: top-1 "
                                         r"0\.333 on 60 labeled images, 100% predicted as one class\. Likely a "
                                         r"preprocessing mismatch"):
        checks.check_reference_accuracy(collapsed, labels, "raw", "FP32 reference")
    good = np.eye(3)[labels]
    checks.check_reference_accuracy(good, labels, "xception", "FP32 reference")
    checks.check_reference_accuracy(collapsed[:10], labels[:10], "raw", "FP32 reference")  # too few to tell


def test_a_reference_at_chance_stops_the_run_before_any_artifact(tmp_path, tiny_assets):
    """The run's wiring of the check. The model here is at chance by construction (its softmax layer is
    zeroed, so every image gets class 0): whether a given wrong preprocessing drives the tiny model to
    chance depends on its training (a ReLU net is nearly scale-invariant, so [0, 255] inputs sometimes
    still classify stripes), so the test does not rely on it."""
    import keras

    model = keras.saving.load_model(tiny_assets["model"], compile=False)
    head = model.get_layer("predictions")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    path = tmp_path / "at_chance.keras"
    model.save(path)
    cfg = tiny_config(tiny_assets, tmp_path / "out", model={"path": str(path)}, targets=[{"name": "tflite-arm"}])
    res = runner.invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))])
    assert res.exit_code == 2, res.output
    assert "expected FP32 reference top-1 clearly above chance" in res.output
    assert "Likely a preprocessing mismatch" in res.output and "input.preprocessing 'xception'" in res.output
    assert not (tmp_path / "out" / "artifacts").exists() and not (tmp_path / "out" / "report.json").exists()


# ---- row 9: labels -------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, message", [
    (b"\xef\xbb\xbfa\nb\n", r"expected UTF-8 text without a byte-order mark\. Received: a UTF-8 BOM"),
    (b"\xff\xfea\x00\n\x00", r"expected UTF-8 text\. Received: UTF-16"),
    (b"caf\xe9\nbar\n", r"expected UTF-8 text\. Received: undecodable byte 0xe9 on line 1"),
    (b"a\r\nb\r\n", r"expected LF line endings\. Received: CR/CRLF line endings \(first on line 1\)"),
    (b"a\nb\na\n", r"expected unique class labels\. Received duplicates: \['a'\]"),
    (b"only\n", r"expected at least 2 class labels\. Received: 1 \['only'\]"),
])
def test_labels_file_is_read_strictly(tmp_path, raw, message):
    p = tmp_path / "labels.txt"
    p.write_bytes(raw)
    with pytest.raises(InputError, match=rf"labels file '{p}': {message}"):
        read_labels(p)


def test_labels_file_ok_and_count_checked_against_outputs(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_bytes(b"chat\nchien\n\noiseau\n")
    assert read_labels(p) == ["chat", "chien", "oiseau"]
    check_outputs(3, read_labels(p), "model")
    with pytest.raises(InputError, match=r"model: expected 3 class scores, one per label \(3 labels\)\. "
                                         r"Received: 4 outputs"):
        check_outputs(4, read_labels(p), "model")


def test_labels_that_do_not_fit_the_model_stop_the_run_even_when_cached(tmp_path, resumed):
    """After a complete run, a labels file with 4 labels for the 3-output model: the reference scores are
    cached (the Keras model is not even loaded) and the mismatch is still an error before packaging."""
    out = tmp_path / "out"
    shutil.copytree(resumed["out"], out)
    before = (out / "report.json").read_bytes()
    labels = tmp_path / "labels.txt"
    labels.write_text("horizontal\nvertical\ndiagonal\nround\n")
    cfg = json.loads(json.dumps(resumed["cfg"]))
    cfg["output"], cfg["data"]["labels"] = str(out), str(labels)
    res = runner.invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))])
    assert res.exit_code == 2, res.output
    assert "expected 4 class scores, one per label (4 labels). Received: 3 outputs" in res.output
    assert (out / "report.json").read_bytes() == before
    published = (out / "artifacts" / "tflite-arm-fp32" / "labels.txt").read_text().split()
    assert published == ["horizontal", "vertical", "diagonal"]
    assert json.loads(before)["labels"] == published


# ---- row 12: two runs on one output directory ------------------------------------------------------
def test_second_run_waits_with_wait(tmp_path):
    with lock_held_by_child(tmp_path) as (_, release):
        threading.Timer(1.0, release.set).start()
        t0 = time.monotonic()
        with locked_output(tmp_path, wait=True):
            waited = time.monotonic() - t0
    assert waited >= 0.9  # it blocked until the holder released the lock, then got it


def test_second_cli_run_names_the_holder(tmp_path, tiny_assets):
    out = tmp_path / "out"
    with lock_held_by_child(out) as (p, _):
        cfg = tiny_config(tiny_assets, out)
        res = runner.invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))])
    assert res.exit_code == 2
    assert f'"pid": {p.pid}' in res.output and "--wait" in res.output


# ---- rows 6-7 wired into the data loader (the unit checks are in test_calibration.py) ----------------
def _ctx(tiny_assets, tmp_path, **data):
    from edgepipe.config.schema import parse_config
    from edgepipe.engine.context import RunContext

    cfg = tiny_config(tiny_assets, tmp_path / "out")
    cfg["data"].update(data)
    return RunContext(parse_config(cfg), tiny_assets["model"])


def test_non_finite_pixels_stop_the_data_loader(tiny_assets, tmp_path, monkeypatch):
    """A preprocessing that divides by a zero std makes inf/NaN: the batch never reaches a converter."""
    import edgepipe.calibration.preprocess as pp

    monkeypatch.setattr(pp, "IMAGENET_STD", (0.0, 0.0, 0.0))
    cfg = tiny_config(tiny_assets, tmp_path / "out")
    cfg["input"]["preprocessing"] = "imagenet"
    from edgepipe.config.schema import parse_config
    from edgepipe.engine.context import RunContext

    ctx = RunContext(parse_config(cfg), tiny_assets["model"])
    with pytest.raises(InputError, match=r"calibration data: expected finite pixel values\. Received NaN/inf in 30 "
                                         r"of 30 images"):
        _ = ctx.calibration


def test_small_calibration_set_warns_with_its_count(tiny_assets, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edgepipe")
    ctx = _ctx(tiny_assets, tmp_path, min_calibration=100)
    assert len(ctx.calibration) == 30
    assert "calibration data: 30 images, fewer than the configured minimum of 100" in caplog.text


def test_empty_calibration_split_is_an_error(tiny_assets, tmp_path):
    empty = tmp_path / "empty_data"
    for c in ("horizontal", "vertical", "diagonal"):
        (empty / c).mkdir(parents=True)
    ctx = _ctx(tiny_assets, tmp_path, calibration={"source": str(empty), "split": "all"})
    with pytest.raises(InputError, match=r"expected at least one image\. Received: 0 images"):
        _ = ctx.calibration


# ---- init --output: never a device, a FIFO, a folder or a link that leads nowhere, --force or not ------------
def test_init_output_that_is_not_a_regular_file_is_refused_even_with_force(world, monkeypatch):
    """`init -o /dev/full --force` replaced the system's device node with a YAML file, and a FIFO the same
    way; without --force the refusal called them "an existing file". Only a new file, or a regular file
    (also through a link) with --force, is written."""
    import os
    import stat

    from edgepipe.engine import from_model
    from tests.fixtures.hostile import run_cli, snapshot

    monkeypatch.setattr(from_model, "model_io", lambda model, trust=False: ((71, 71, 3), 4, "a test"))
    root = world["root"]
    os.mkfifo(root / "fifo")
    (root / "to_fifo").symlink_to("fifo")
    (root / "dangling").symlink_to(root / "nowhere.yaml")
    (root / "loop").symlink_to("loop")
    (root / "adir").mkdir()
    cases = [("fifo", "a FIFO (named pipe)"), ("to_fifo", "a symbolic link to a FIFO (named pipe) ('fifo')"),
             ("dangling", "a dangling symbolic link"), ("loop", "a symbolic-link loop"), ("adir", "a directory")]
    try:  # a character device like /dev/null, made here (needs CAP_MKNOD: root in the test container)
        os.mknod(root / "nulldev", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        cases.append(("nulldev", "a character device"))
    except (PermissionError, AttributeError):
        pass
    before = snapshot(root)
    for name, kind in cases:
        for force in ([], ["--force"]):
            res = run_cli("init", world["model"], "--data", world["data"], "-o", root / name, *force)
            assert res.exit_code == 2, res.output
            assert (f"--output '{root / name}': expected a writable file: a new file, or an existing regular file "
                    f"with --force. Received: {kind}") in res.output, res.output
            assert "Traceback" not in res.output and snapshot(root) == before
    # an input that is a link loop: named by its reader, not a RuntimeError from resolving it against --output
    res = run_cli("init", world["model"], "--data", root / "loop", "-o", root / "new.yaml")
    assert res.exit_code == 2 and "loop' (a symbolic-link loop)" in res.output, res.output
    assert snapshot(root) == before
    assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode) and not (root / "nowhere.yaml").exists()
    if ("nulldev", "a character device") in cases:
        assert stat.S_ISCHR(os.lstat(root / "nulldev").st_mode)
    # a regular file (through a link) is still replaced with --force, and refused without
    (root / "old.yaml").write_text("old\n")
    (root / "link.yaml").symlink_to("old.yaml")
    res = run_cli("init", world["model"], "--data", world["data"], "-o", root / "link.yaml")
    assert res.exit_code == 2 and "Received: an existing file" in res.output, res.output
    res = run_cli("init", world["model"], "--data", world["data"], "-o", root / "link.yaml", "--force")
    assert res.exit_code == 0, res.output
    assert (root / "link.yaml").is_symlink() and "model:" in (root / "old.yaml").read_text()


@pytest.mark.parametrize("force", [False, True])
def test_init_keeps_what_appears_at_its_output_while_the_model_is_read(world, monkeypatch, force):
    """init checked --output once, then read the model (seconds) and renamed over the path: a FIFO (with --force)
    or a file (without) put there meanwhile was replaced."""
    import os
    import stat

    from edgepipe.cli import configs
    from edgepipe.engine import from_model
    from tests.fixtures.hostile import run_cli

    monkeypatch.setattr(from_model, "model_io", lambda model, trust=False: ((71, 71, 3), 4, "a test"))
    out = world["root"] / "swapped.yaml"
    real = configs._plan

    def plan_then_swap(*args, **kw):
        plan = real(*args, **kw)
        os.mkfifo(out) if force else out.write_text("the user's own config\n")
        return plan

    monkeypatch.setattr(configs, "_plan", plan_then_swap)
    res = run_cli("init", world["model"], "--data", world["data"], "-o", out, *(["--force"] if force else []))
    said = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    if force:
        assert "Received: a FIFO (named pipe); edgepipe never replaces it" in said
        assert stat.S_ISFIFO(out.lstat().st_mode)
    else:
        assert "Received: a file that appeared while the model was read" in said
        assert out.read_text() == "the user's own config\n"
    assert sorted(p.name for p in world["root"].iterdir() if p.name.startswith(".swapped")) == []  # no temporary


# ---- an empty --data or --out is refused, never read as the current folder ---------------------------------
@pytest.mark.parametrize("args, said", [
    (["validate", TINY_TFLITE, "--data", "", "--preprocessing", "unit"],
     "--data: expected labeled images: a folder of class sub-folders or a CSV path,label. Received: an empty value"),
    (["bench", TINY_TFLITE, "--data", " ", "--preprocessing", "unit", "--runs", "10", "--images", "2"],
     "--data: expected images to time on: a folder (flat or class sub-dirs) or a CSV. Received: an empty value"),
    (["keygen", "--out", ""], "--out: expected a key directory (or no --out: $EDGEPIPE_KEYS or "
                              "~/.config/edgepipe/keys). Received: an empty value"),
    (["bundle", "ART", "--out", "", "--key", "keys/edgepipe.key", "--samples", "DATA"],
     "--out: expected a bundle store folder (new or existing). Received: an empty value"),
], ids=["validate", "bench", "keygen", "bundle"])
def test_an_empty_data_or_out_value_is_refused_not_read_as_the_current_folder(world, monkeypatch, args, said):
    """validate and bench read `--data ''` as the current folder, keygen and bundle wrote into it with
    `--out ''` (Path('') is '.'); `run` and `init` already refused an empty --data the same way."""
    from edgepipe.boards.signing import keygen
    from tests.fixtures.hostile import run_cli, snapshot

    root = world["root"]
    keygen(root / "keys")
    monkeypatch.chdir(world["data"])  # the current folder is a valid data set and a valid store
    args = [{"ART": root / "art", "DATA": world["data"]}.get(a, a) if isinstance(a, str) else a for a in args]
    before = snapshot(root)
    for json_flag in ([], ["--json"]):
        res = run_cli(*args, *json_flag)
        assert res.exit_code == 2 and said in res.output, res.output
        assert "Traceback" not in res.output and snapshot(root) == before
