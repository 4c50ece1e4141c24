"""Hostile inputs, second pass: holes found by trying the command line with inputs the first pass
(tests/test_hostile_inputs.py, test_output_folder.py, test_hostile_boards.py, test_bad_inputs.py) did not cover,
each fixed where it is born. Nothing here trains or loads a model: the structurally valid .keras stand-in
(`tests/fixtures/hostile.fake_keras`) is enough, except where a test says otherwise.
"""

from __future__ import annotations

import os

import pytest

from edgepipe.config.schema import load_config
from edgepipe.core.errors import ConfigError
from tests.fixtures.hostile import config, image_folder, run_cli, snapshot, write_yaml


# ---- YAML: a repeated key, an integer Python refuses to convert -----------------------------------
def test_a_key_given_twice_and_a_huge_integer_are_config_errors_naming_the_lines(world, tmp_path):
    text = write_yaml(tmp_path / "p.yaml", config(world["model"], world["data"], tmp_path / "out")).read_text()
    (tmp_path / "dup.yaml").write_text(text + "threads: 2\nthreads: 8\n")  # PyYAML alone keeps 8, silently
    with pytest.raises(ConfigError, match=r"expected each key once in a mapping\. Received: 'threads' on line "
                                          r"\d+ and again on line \d+"):
        load_config(tmp_path / "dup.yaml")
    (tmp_path / "nested.yaml").write_text(text.replace("output:", "output: x\noutput:", 1))
    with pytest.raises(ConfigError, match=r"'output' on line"):
        load_config(tmp_path / "nested.yaml")
    (tmp_path / "big.yaml").write_text(text + "threads: " + "9" * 5000 + "\n")  # int() refuses > 4300 digits
    with pytest.raises(ConfigError, match=r"expected YAML values Python can read\. Received: Exceeds the limit"):
        load_config(tmp_path / "big.yaml")
    for name in ("dup.yaml", "big.yaml"):  # through the CLI, run and sweep: exit 2, no traceback
        for command in ("run", "sweep"):
            res = run_cli(command, tmp_path / name)
            assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    # merge keys may still be overridden: that is what they are for
    (tmp_path / "merge.yaml").write_text(text + "gates: &g {max_top1_drop: 2.0}\nlatency:\n  <<: {warmup: 1, runs: 60}"
                                                "\n  warmup: 3\n")
    cfg = load_config(tmp_path / "merge.yaml")
    assert (cfg.latency.warmup, cfg.latency.runs) == (3, 60)
    assert not (tmp_path / "out").exists()


# ---- labels: one rule wherever they come from ------------------------------------------------------
@pytest.mark.parametrize("bad", ["hori\x0czontal", "a\u2028b", "a\x1cb", "a\x85b", "a\x00b", "x" * 10_000])
def test_labels_that_labels_txt_cannot_hold_are_refused_from_a_file_the_yaml_and_class_folders(tmp_path, world, bad):
    """labels.txt is one label per line, read on the board with splitlines(): a form feed, U+2028, the
    other splitlines() breaks or NUL would make one label two (and shift every class after it)."""
    from edgepipe.config.schema import parse_config
    from edgepipe.core.errors import InputError
    from edgepipe.core.labels import read_labels
    from edgepipe.engine.from_model import Plan, _labels

    (tmp_path / "labels.txt").write_text(f"red\n{bad}\nblue\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"expected non-empty labels of at most 256 characters") as err:
        read_labels(tmp_path / "labels.txt")
    assert len(str(err.value)) < 1000  # a 10,000-character label is quoted cut, never whole
    with pytest.raises(ConfigError, match=r"data\.labels: expected non-empty labels of at most 256"):
        cfg = config(world["model"], world["data"], tmp_path / "out")
        parse_config({**cfg, "data": {**cfg["data"], "labels": ["red", bad, "blue"]}})
    if "\x00" not in bad and len(bad) < 200:  # a folder name can hold the others
        folders = image_folder(tmp_path / "folders", classes=("red", bad, "blue"), per_class=1)
        with pytest.raises(InputError, match=r"class labels \(the class folders .*expected non-empty labels"):
            _labels(Plan({"data": {}}), str(folders), None, None)
    cfg = config(world["model"], world["data"], tmp_path / "out")
    yml = write_yaml(tmp_path / "p.yaml", {**cfg, "data": {**cfg["data"], "labels": str(tmp_path / "labels.txt")}})
    res = run_cli("run", yml)
    assert res.exit_code == 2 and "expected non-empty labels" in res.output and len(res.output) < 2000, res.output


def test_the_one_line_form_reads_a_csv_through_the_csv_source_reader(tmp_path):
    """`edgepipe run MODEL --data x.csv` read the labels with its own csv.DictReader: a Latin-1 file was a
    UnicodeDecodeError traceback, a BOM hid the first column. Now the CSV source reader reads it."""
    from edgepipe.core.errors import InputError
    from edgepipe.engine.from_model import Plan, _labels

    (tmp_path / "latin1.csv").write_bytes(b"path,label\nx.png,caf\xe9\ny.png,b\n")
    with pytest.raises(InputError, match=r"expected UTF-8 text\. Received: undecodable byte 0xe9 on line 2"):
        _labels(Plan({"data": {}}), str(tmp_path / "latin1.csv"), None, None)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbflabel,path\ncat,x.png\ndog,y.png\n")
    assert _labels(Plan({"data": {}}), str(tmp_path / "bom.csv"), None, None) == ["cat", "dog"]


# ---- the one-line form's output path ---------------------------------------------------------------
def test_the_one_line_form_keeps_a_symlinked_output_a_link_so_a_dangling_one_is_refused(world, monkeypatch):
    """`edgepipe run MODEL --data DIR -o out` with `out -> /elsewhere/new` dangling: the one-line form
    resolved the path before the output check, so the check saw a plain new path and the run created
    /elsewhere/new (a folder at the root, for `-> /nonexistent`). The path is now absolute, unresolved."""
    from edgepipe.engine import from_model

    monkeypatch.setattr(from_model, "model_io", lambda model, trust=False: ((71, 71, 3), 4, "a test"))
    target = world["root"] / "elsewhere" / "new"
    (world["root"] / "out").symlink_to(target)
    before = snapshot(world["root"])
    res = run_cli("run", world["model"], "--data", world["data"], "-o", world["root"] / "out", "--fp32",
                  "--targets", "tflite-arm")
    assert res.exit_code == 2 and "expected a folder. Received: a dangling symbolic link" in res.output, res.output
    assert not target.parent.exists() and snapshot(world["root"]) == before


# ---- init never replaces an input, and never leaves a temporary behind ------------------------------
def test_init_force_never_replaces_its_own_inputs_and_a_failed_write_leaves_nothing(world, monkeypatch):
    from edgepipe.engine import from_model

    monkeypatch.setattr(from_model, "model_io", lambda model, trust=False: ((71, 71, 3), 4, "a test"))
    labels = world["root"] / "labels.txt"
    labels.write_text("red\ngreen\nblue\ngray\n")
    before = snapshot(world["root"])
    for out, said in [(world["model"], "it is the model"), (labels, "it is the labels file"),
                      (world["data"] / "p.yaml", "it is inside the data")]:
        res = run_cli("init", world["model"], "--data", world["data"], "--labels", labels, "-o", out, "--force")
        assert res.exit_code == 2 and said in res.output, res.output  # --force replaced the model with YAML
        assert snapshot(world["root"]) == before
    (world["root"] / "adir").mkdir()
    res = run_cli("init", world["model"], "--data", world["data"], "-o", world["root"] / "adir", "--force")
    assert res.exit_code == 2 and "expected a writable file" in res.output, res.output
    assert not list(world["root"].glob(".adir.tmp-*"))  # the half-written temporary was left here
    res = run_cli("init", world["model"], "--data", world["data"], "-o", world["root"] / "p.yaml")
    assert res.exit_code == 0 and (world["root"] / "p.yaml").is_file(), res.output


# ---- keygen -----------------------------------------------------------------------------------------
def test_keygen_refuses_a_file_a_dangling_link_and_odd_key_paths_and_never_splits_a_pair(tmp_path):
    """keygen -o FILE or -o DANGLING_LINK was a FileExistsError traceback; with only edgepipe.pub present
    the refusal named edgepipe.key; a folder at edgepipe.pub with --force replaced the private key, then
    failed, leaving a new private key beside no public one."""
    (tmp_path / "afile").write_text("precious")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for out, said in [("afile", "expected a folder. Received: an existing file"),
                      ("dangling", "expected a folder. Received: a dangling symbolic link"),
                      ("afile/sub", "expected a writable folder. Received: Not a directory")]:
        res = run_cli("keygen", "-o", tmp_path / out)
        assert res.exit_code == 2 and said in res.output, res.output
    assert (tmp_path / "afile").read_text() == "precious" and not (tmp_path / "nowhere").exists()
    half = tmp_path / "half"
    half.mkdir()
    (half / "edgepipe.pub").write_text("a public key someone relies on")
    res = run_cli("keygen", "-o", half)
    assert res.exit_code == 2 and "Received: edgepipe.pub exists" in res.output, res.output
    odd = tmp_path / "odd"
    (odd / "edgepipe.pub").mkdir(parents=True)
    (odd / "edgepipe.key").write_text("the old private key")
    res = run_cli("keygen", "-o", odd, "--force")
    assert res.exit_code == 2 and "edgepipe.pub not a regular file" in res.output, res.output
    assert (odd / "edgepipe.key").read_text() == "the old private key" and sorted(os.listdir(odd)) == [
        "edgepipe.key", "edgepipe.pub"]
    res = run_cli("keygen", "-o", tmp_path / "fresh")
    assert res.exit_code == 0 and sorted(os.listdir(tmp_path / "fresh")) == ["edgepipe.key", "edgepipe.pub"]


def test_keygen_never_makes_a_home_directory(tmp_path, monkeypatch):
    """keygen with HOME=/nonexistent/none created that whole chain for its default key directory."""
    monkeypatch.delenv("EDGEPIPE_KEYS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "nonexistent" / "none"))
    res = run_cli("keygen")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "expected a home folder that exists. Received: HOME" in said, res.output
    assert "set EDGEPIPE_KEYS or pass --out" in said and not (tmp_path / "nonexistent").exists()
    (tmp_path / "nonexistent" / "none").mkdir(parents=True)  # a home that exists: its key folders are made
    assert run_cli("keygen").exit_code == 0
    assert sorted(os.listdir(tmp_path / "nonexistent" / "none" / ".config" / "edgepipe" / "keys")) == [
        "edgepipe.key", "edgepipe.pub"]


# ---- executor: process=N bounded like threads --------------------------------------------------------
@pytest.mark.parametrize("spec, said", [
    ("process=99999", r"expected process=N with N at most 4 x the cores of this host = \d+ worker processes\. "
                      r"Received: 'process=99999'"),
    ("process=²", r"expected 'local', 'process', 'process=N' \(N >= 1\).*Received: 'process=²'"),  # isdigit() said yes
    ("process=" + "9" * 5000, r"Received: 'process=9+\.\.\.9+'$"),  # int() refused > 4300 digits in its own words
])
def test_process_workers_are_bounded_and_ascii(world, spec, said):
    from edgepipe.config.schema import parse_config
    from edgepipe.core.bounds import max_threads
    from edgepipe.executors.base import parse_spec

    with pytest.raises(ConfigError, match=said):
        parse_spec(spec)
    with pytest.raises(ConfigError, match=r"executor: expected"):
        parse_config({**config(world["model"], world["data"], world["root"] / "out"), "executor": spec})
    assert parse_spec(f"process={max_threads()}") == ("process", str(max_threads()))


# ---- empty option values ------------------------------------------------------------------------------
@pytest.mark.parametrize("args, said", [
    (["--data", ""], "--data: expected labeled images: a folder of class sub-folders or a CSV path,label. "
                     "Received: an empty value"),  # read the current folder's sub-folders as the classes
    (["--data", "DATA", "--targets", ",,"], "--targets: expected comma-separated target names"),
])
def test_an_empty_data_or_targets_value_is_refused_not_read_as_a_default(world, monkeypatch, args, said):
    from edgepipe.engine import from_model

    monkeypatch.setattr(from_model, "model_io", lambda model, trust=False: ((71, 71, 3), 4, "a test"))
    monkeypatch.chdir(world["root"])
    args = [str(world["data"]) if a == "DATA" else a for a in args]
    before = snapshot(world["root"])
    for command in (["run", world["model"], "-o", world["root"] / "out"], ["init", world["model"]]):
        res = run_cli(*command, *args)
        assert res.exit_code == 2 and said in res.output, res.output
    assert snapshot(world["root"]) == before


def test_a_csv_naming_its_path_or_label_column_twice_is_refused(tmp_path):
    from edgepipe.calibration.sources import csv_rows
    from edgepipe.core.errors import InputError

    (tmp_path / "two.csv").write_text("path,label,label\nx.png,red,green\n")  # the first 'label' was taken
    with pytest.raises(InputError, match=r"line 1: expected each of the columns 'path' and 'label' once\. "
                                         r"Received: 'label' more than once"):
        csv_rows(tmp_path / "two.csv")
