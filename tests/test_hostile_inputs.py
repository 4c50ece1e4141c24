"""Hostile inputs, fixed at the mechanism (issue 18): leftovers by marker, every file read a regular file within
limits, numbers bounded, decoding right or refused. Part 1, the output folder validated before anything is
written, is tests/test_output_folder.py.

Nothing here trains, loads or converts a model: a structurally valid .keras stand-in is enough for
every check that runs before a model is loaded, so each case takes milliseconds.
"""

from __future__ import annotations

import json
import os
import socket
import zipfile

import numpy as np
import pytest

from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.calibration.sources import open_source
from edgepipe.config.schema import load_config, parse_config
from edgepipe.core import tempdirs
from edgepipe.core.errors import ConfigError, InputError
from edgepipe.formats.inspect import check_model_file
from tests.fixtures.hostile import CLASSES, cli, config, fake_keras, image_folder, run_cli, write_yaml
from tests.fixtures.leftovers import dead_temp_dir


# ---- 2. leftovers are edgepipe's own, provably -------------------------------------------------
def test_only_marked_folders_of_dead_processes_are_swept(tmp_path):
    gone = dead_temp_dir(tmp_path / "a")
    own = dead_temp_dir(tmp_path / "b", pid=os.getpid())  # an earlier run of this process: swept too
    alive = dead_temp_dir(tmp_path / "c", pid=1)
    elsewhere = dead_temp_dir(tmp_path / "d")
    rec = json.loads((elsewhere / tempdirs.MARKER).read_text())
    (elsewhere / tempdirs.MARKER).write_text(json.dumps({**rec, "host": socket.gethostname() + "-other"}))
    copied = tmp_path / ".tmp-copied-999999999"  # a marker copied into a user's folder names another folder
    copied.mkdir()
    (copied / tempdirs.MARKER).write_text((dead_temp_dir(tmp_path / "e") / tempdirs.MARKER).read_text())
    garbage = tmp_path / ".tmp-garbage-999999999"
    garbage.mkdir()
    (garbage / tempdirs.MARKER).write_text("{not json")
    fifo = tmp_path / ".tmp-fifo-999999999"
    fifo.mkdir()
    os.mkfifo(fifo / tempdirs.MARKER)  # never read (a reader would block)
    link = tmp_path / ".tmp-link-999999999"
    link.symlink_to(alive)
    assert tempdirs.sweep(tmp_path) == 3  # gone, own, and e's real folder
    left = {p.name for p in tmp_path.iterdir()}
    assert gone.name not in left and own.name not in left
    assert {alive.name, elsewhere.name, copied.name, garbage.name, fifo.name, link.name} <= left


def test_a_scratch_folder_is_gone_when_its_block_ends_either_way(tmp_path):
    with tempdirs.scratch_beside(tmp_path / "a.tar") as shell:
        (shell / "a.tar").write_text("x")
        os.replace(shell / "a.tar", tmp_path / "a.tar")
    with pytest.raises(OSError), tempdirs.scratch_beside(tmp_path / "b.tar") as shell:
        (shell / "b.tar").write_text("x")
        raise OSError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]


def test_publish_replaces_atomically_and_a_killed_publish_gets_its_previous_version_back(tmp_path):
    final = tmp_path / "art"
    for version in ("v1", "v2"):
        tmp = tempdirs.make_temp_dir(final)
        (tmp / "model").write_text(version)
        tempdirs.publish_dir(tmp, final)
    assert (final / "model").read_text() == "v2" and sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    assert not (final / tempdirs.MARKER).exists()
    old = dead_temp_dir(final, "old")  # killed between the two renames: the previous version waits in "old"
    os.rename(final, old / "previous")
    assert tempdirs.sweep(tmp_path) == 1 and (final / "model").read_text() == "v2"


class _Stopped(BaseException):
    """What this test's SIGTERM handler raises (as edgepipe's `Terminated` does)."""


@pytest.fixture
def sigterm_mid_mkdir(monkeypatch):
    """SIGTERM sent to this process right after a temporary folder is created, before it is marked (the
    window the reliability test's signal once hit on a loaded machine); the handler raises `_Stopped`."""
    import signal

    def stop(signum, frame):
        raise _Stopped

    real = tempdirs._start_ticks

    def ticks_then_signal(pid):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(pid)

    before = signal.signal(signal.SIGTERM, stop)
    monkeypatch.setattr(tempdirs, "_start_ticks", ticks_then_signal)
    yield
    signal.signal(signal.SIGTERM, before)


def test_a_signal_while_a_temporary_folder_is_made_leaves_it_marked_or_gone(tmp_path, sigterm_mid_mkdir):
    from edgepipe.core.cache import StageCache

    with pytest.raises(_Stopped):  # held until the folder is marked: never an unmarked one, which no sweep removes
        tempdirs.make_temp_dir(tmp_path / "art")
    (left,) = tmp_path.iterdir()
    assert tempdirs.read_marker(left) is not None
    with pytest.raises(_Stopped):  # owned from birth: removed, and the block never ran
        with tempdirs.owned_temp_dir(tmp_path / "art2"):
            raise AssertionError("the block ran after the signal")
    assert list(tmp_path.iterdir()) == [left]
    with pytest.raises(_Stopped):  # the scratch folders of bundles, archives and atomic writes alike
        with tempdirs.scratch_beside(tmp_path / "bundle-v1"):
            raise AssertionError("the block ran after the signal")
    assert list(tmp_path.iterdir()) == [left]
    ran = []
    with pytest.raises(_Stopped):  # a stage interrupted as it starts: nothing left under the cache
        StageCache(tmp_path / "cache").run("s", {}, lambda out: ran.append(out))
    assert ran == [] and [p.name for p in (tmp_path / "cache").iterdir()] == [".locks"]


# ---- 4. every file read is a regular file within limits ------------------------------------------
def test_a_fifo_model_is_refused_not_waited_on(world):
    fifo = world["root"] / "fifo.keras"
    os.mkfifo(fifo)
    cfg = write_yaml(world["root"] / "p.yaml", config(fifo, world["data"], world["root"] / "out"))
    res = cli("run", cfg, timeout=60)  # a real process: a hang fails the test instead of blocking it forever
    assert res.returncode == 2 and "a FIFO (named pipe)" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_fifo_config_labels_and_csv_are_refused(tmp_path):
    for name in ("p.yaml", "labels.txt", "data.csv"):
        os.mkfifo(tmp_path / name)
    with pytest.raises(ConfigError, match="a FIFO"):
        load_config(tmp_path / "p.yaml")
    from edgepipe.core.labels import read_labels

    with pytest.raises(InputError, match=r"labels file .*: expected a regular file\. Received: a FIFO"):
        read_labels(tmp_path / "labels.txt")
    with pytest.raises(InputError, match=r"CSV source .*Received: a FIFO"):
        open_source(str(tmp_path / "data.csv"), ["a", "b"])


@pytest.mark.parametrize("field", ["model", "labels", "source", "output"])
def test_a_nul_byte_in_a_path_is_named_not_a_traceback(world, field):
    """No system call takes a NUL byte: os.stat raised a bare ValueError (exit 1 with a traceback) for a config
    path or a CSV row holding one."""
    bad = str(world["root"] / "a\x00b")
    raw = config(world["model"], world["data"], world["root"] / "out")
    if field == "model":
        raw["model"]["path"] = bad
    elif field == "labels":
        raw["data"]["labels"] = bad
    elif field == "source":
        raw["data"]["calibration"]["source"] = bad
    else:
        raw["output"] = bad
    with pytest.raises(ConfigError, match=r"expected a path without a NUL byte\. Received: a NUL byte at position"):
        parse_config(raw)
    from edgepipe.core import safeio

    assert safeio.stat_problem(bad) == "a path containing a NUL byte"
    for check in (safeio.check_regular, safeio.open_regular):
        with pytest.raises(InputError, match=r"expected a readable regular file\. Received: a path containing a NUL"):
            check(bad, "file")


def test_a_csv_row_with_a_nul_byte_stops_the_run_with_exit_2(world):
    (world["root"] / "d.csv").write_text(f"path,label\n{world['data']}/red/a\x00b.png,red\n")
    raw = config(world["model"], world["data"], world["root"] / "out")
    raw["data"]["calibration"]["source"] = str(world["root"] / "d.csv")
    res = run_cli("run", write_yaml(world["root"] / "p.yaml", raw))
    assert res.exit_code == 2 and "Received: a path containing a NUL byte" in res.output, res.output
    assert not (world["root"] / "out").exists()


def test_yaml_alias_bomb_and_deep_nesting_are_refused_quickly_with_short_messages(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefghijkl", "bcdefghijklm", strict=True))
    bomb += "model: {path: m.keras}\nthreads: *m\n"  # 9^13 leaves once expanded
    (tmp_path / "bomb.yaml").write_text(bomb)
    with pytest.raises(ConfigError, match=r"expected at most 100 YAML aliases") as err:
        load_config(tmp_path / "bomb.yaml")
    assert len(str(err.value)) < 500
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"nested at most 50 levels"):
        load_config(tmp_path / "deep.yaml")
    (tmp_path / "big.yaml").write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"at most 1\.0 MiB"):
        load_config(tmp_path / "big.yaml")


def test_a_few_aliases_still_work_and_schema_errors_quote_their_input_briefly(tmp_path, world):
    cfg = config(world["model"], world["data"], world["root"] / "out")
    text = write_yaml(tmp_path / "p.yaml", cfg).read_text() + "gates: {max_top1_drop: &d 2.0, max_p90_ms: *d}\n"
    (tmp_path / "p.yaml").write_text(text)
    assert load_config(tmp_path / "p.yaml").gates.max_p90_ms == 2.0
    with pytest.raises(ConfigError) as err:
        parse_config({**cfg, "threads": ["x" * 10_000] * 1000, **{f"junk{i}": list(range(1000)) for i in range(50)}})
    assert len(str(err.value)) < 2500 and "more)" in str(err.value)


def test_keras_archives_are_capped_before_anything_inflates(tmp_path):
    big_json = fake_keras(tmp_path / "json.keras", {"config.json": b" " * (65 << 20)}, zipfile.ZIP_DEFLATED)
    with pytest.raises(InputError, match=r"config\.json of at most 64\.0 MiB\. Received: 65\.0 MiB uncompressed"):
        check_model_file(big_json, "keras")
    bomb = fake_keras(tmp_path / "bomb.keras", {"config.json": b"{}", "model.weights.h5": b"\0" * (40 << 20)},
                      zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < (1 << 20)
    with pytest.raises(InputError, match=r"compressed at most 100:1 \(a zip bomb otherwise\)\. Received: "
                                         r"model\.weights\.h5 inflating"):
        check_model_file(bomb, "keras")


def test_images_are_regular_files_within_a_pixel_limit(tmp_path):
    from PIL import Image

    spec = PreprocessSpec(8, 8, 3, "raw")
    Image.new("1", (10_000, 9_000)).save(tmp_path / "huge.png")  # 90 M pixels in a few kB
    with pytest.raises(InputError, match=r"at most 89478485 pixels \(a decompression bomb otherwise\)\. Received: "
                                         r".*90000000 pixels"):
        spec.load(tmp_path / "huge.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(InputError, match=r"expected a readable image file .*Received: "):
        spec.load(tmp_path / "bad.png")
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(InputError, match=r"Received: a FIFO"):
        spec.load(tmp_path / "pipe.png")


# ---- 6. numbers bounded in the schema ----------------------------------------------------------------
@pytest.mark.parametrize("patch, said", [
    ({"threads": 10_000}, "expected at most 4 x the"),
    ({"threads": 2**40}, "expected at most 4 x the"),
    ({"input": {"size": [100_000, 100_000]}}, "input.size.0: Input should be less than or equal to 2048"),
    ({"latency": {"runs": 10**9}}, "latency.runs: Input should be less than or equal to 100000"),
    ({"latency": {"thread_sweep": [1, 10_000]}}, "latency.thread_sweep.1: expected at most 4 x the"),
    ({"data": {"splits": {"calibration": 10**9}}}, "data.splits.calibration: Input should be less than or equal"),
    ({"data": {"splits": {"seed": -1}}}, "data.splits.seed: Input should be greater than or equal to 0"),
    ({"diagnostics": {"per_layer_images": 10**6}}, "diagnostics.per_layer_images"),
])
def test_numbers_are_bounded_with_a_clear_message(world, patch, said):
    cfg = config(world["model"], world["data"], world["root"] / "out")
    for k, v in patch.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    with pytest.raises(ConfigError, match="Received") as err:
        parse_config(cfg)
    assert said in str(err.value)


def test_command_line_thread_counts_are_bounded(world):
    res = run_cli("validate", world["model"], "--data", world["data"], "--threads", 10_000)
    assert res.exit_code == 2 and "--threads: expected at most 4 x the" in res.output, res.output


# ---- 7. decoding right or refused ------------------------------------------------------------------
def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    levels = np.array([[0, 257 * 100], [32768, 65535]], np.uint16).repeat(4, 0).repeat(4, 1)
    Image.fromarray(levels).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    x = PreprocessSpec(8, 8, 3, "raw", interpolation="nearest").load(tmp_path / "g16.png")
    assert x.shape == (8, 8, 3)
    assert x[0, 0, 0] == 0 and x[0, 7, 0] == pytest.approx(100, abs=1e-3)
    assert x[7, 0, 0] == pytest.approx(127.5, abs=0.01) and x[7, 7, 2] == pytest.approx(255, abs=1e-3)


def test_csv_sources_handle_a_bom_refuse_latin1_and_name_short_rows(tmp_path):
    image_folder(tmp_path, classes=("a",), per_class=1)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfpath,label\na/0.png,a\n")
    assert [r.label for r in open_source(str(tmp_path / "bom.csv"), ["a", "b"])] == [0]
    (tmp_path / "latin1.csv").write_bytes("path,label\na/0.png,a\ncaf\u00e9.png,b\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"expected UTF-8 text\. Received: undecodable byte 0xe9 on line 3"):
        open_source(str(tmp_path / "latin1.csv"), ["a", "b"])
    (tmp_path / "short.csv").write_text("path,label\na/0.png,a\na/0.png\n")
    with pytest.raises(InputError, match=r"line 3: expected 2 fields \['path', 'label'\]\. Received: 1 fields"):
        open_source(str(tmp_path / "short.csv"), ["a", "b"])
    (tmp_path / "utf16.csv").write_bytes("path,label\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"expected UTF-8 text\. Received: UTF-16"):
        open_source(str(tmp_path / "utf16.csv"), ["a", "b"])


def test_a_folder_of_unsupported_images_names_what_it_skipped(tmp_path):
    for name in ("a.gif", "b.webp", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(InputError, match=r"Received: 0 images; skipped 3 file\(s\) of other types \(supported: "
                                         r"\.bmp.*\): 'a\.gif', 'b\.webp', 'c\.txt'"):
        open_source(str(tmp_path), list(CLASSES))


# ---- held clean before issue 18, kept so -------------------------------------------------------------
def test_keras_member_paths_xxe_entity_bombs_and_escaping_onnx_data_stay_refused(tmp_path):
    trav = fake_keras(tmp_path / "trav.keras", {"config.json": b"{}", "../../evil.py": b"print(1)"})
    with pytest.raises(InputError, match=r"relative paths inside the archive\. Received: '\.\./\.\./evil\.py'"):
        check_model_file(trav, "keras")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    (tmp_path / "xxe.xml").write_text(f'<?xml version="1.0"?><!DOCTYPE net [<!ENTITY x SYSTEM "file://{secret}">]>'
                                      '<net><layers><layer id="0" type="Parameter">&x;</layer></layers></net>')
    (tmp_path / "xxe.bin").write_bytes(b"")
    try:
        check_model_file(tmp_path / "xxe.xml")  # external entities are never fetched
    except InputError as err:
        assert "TOP-SECRET" not in str(err)
    entities = "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    laughs = f'<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "aaaaaaaaaa">{entities}]><net>&i;</net>'
    (tmp_path / "laughs.xml").write_text(laughs)
    (tmp_path / "laughs.bin").write_bytes(b"")
    with pytest.raises(InputError, match=r"well-formed IR XML"):
        check_model_file(tmp_path / "laughs.xml")  # expat's amplification limit, not a gigabyte string
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    w.data_location = TensorProto.EXTERNAL
    del w.float_data[:]
    w.external_data.add(key="location", value=str(secret))
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "escape.onnx")
    with pytest.raises(InputError, match=r"passes onnx\.checker"):
        check_model_file(tmp_path / "escape.onnx", "onnx")
