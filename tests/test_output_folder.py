"""Hostile inputs, fixed at the mechanism (issue 18), part 1: the output folder is validated before anything is
written (pipeline/engine/outdir.py `check_output_dir`, the lock, what a user put among the artifacts). The other
parts (leftovers by marker, regular files within limits, numbers bounded, decoding) are in test_hostile_inputs.py.

Nothing here trains, loads or converts a model: a structurally valid .keras stand-in is enough for
every check that runs before a model is loaded, so each case takes milliseconds.
"""

from __future__ import annotations

import os

import pytest

from tests.fixtures.hostile import config, run_cli, snapshot, write_yaml


@pytest.mark.parametrize("where, message", [
    (lambda w: w["data"], "it is the same path as the calibration data"),
    (lambda w: w["data"] / "red", "it is inside the calibration data"),
    (lambda w: w["root"], "it contains the model"),
])
def test_an_output_folder_overlapping_an_input_is_refused_and_nothing_is_written(world, where, message):
    before = snapshot(world["root"])
    cfg = write_yaml(world["root"] / "p.yaml", config(world["model"], world["data"], where(world)))
    res = run_cli("run", cfg)
    assert res.exit_code == 2 and message in res.output, res.output
    assert snapshot(world["root"]) == {**before, "p.yaml": snapshot(world["root"])["p.yaml"]}


def test_output_at_the_root_or_home_is_refused_without_a_lock_file(world, monkeypatch):
    home = world["root"] / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    root_lock_existed = os.path.exists("/.edgepipe.lock")
    for out, said in (("/", "the filesystem root"), (home, "your home directory")):
        res = run_cli("run", write_yaml(world["root"] / "p.yaml", config(world["model"], world["data"], out)))
        assert res.exit_code == 2 and said in res.output, res.output
    assert list(home.iterdir()) == [] and os.path.exists("/.edgepipe.lock") == root_lock_existed


def test_a_non_empty_folder_edgepipe_did_not_create_is_refused(world):
    out = world["root"] / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "thesis.tex").write_text("years of work")
    before = snapshot(out)
    res = run_cli("run", write_yaml(world["root"] / "p.yaml", config(world["model"], world["data"], out)))
    assert res.exit_code == 2 and "a non-empty folder edgepipe did not create" in res.output, res.output
    assert snapshot(out) == before


@pytest.mark.parametrize("spoil, said", [
    (lambda w: w["model"].unlink(), "no such file or directory"),
    (lambda w: os.mkfifo(w["data"] / "blue" / "9.png"), "a FIFO (named pipe)"),
    (lambda w: (w["data"] / "green" / "0.png").unlink() or (w["data"] / "green" / "0.png").symlink_to("0.png"),
     "a symbolic-link loop"),
])
def test_a_refused_run_creates_no_output_folder(world, spoil, said):
    spoil(world)
    out = world["root"] / "out"
    res = run_cli("run", write_yaml(world["root"] / "p.yaml", config(world["model"], world["data"], out)))
    assert res.exit_code == 2 and said in res.output, res.output
    assert not out.exists()


@pytest.mark.parametrize("entry", ["stages", "artifacts"])
def test_an_output_entry_that_is_a_link_is_refused_and_what_it_points_to_is_kept(world, entry):
    """OUT/artifacts (or OUT/stages) as a link to a user's folder: the run replaced the folders in it that were
    named like its artifacts (or removed a stage-named folder without a marker), outside the output folder."""
    out, mine = world["root"] / "out", world["root"] / "mine"
    (mine / "tflite-arm-fp32").mkdir(parents=True)
    (mine / "tflite-arm-fp32" / "notes.txt").write_text("keep me")
    out.mkdir()
    (out / ".edgepipe.lock").write_text("")
    (out / entry).symlink_to(mine)
    before = snapshot(mine)
    res = run_cli("run", write_yaml(world["root"] / "p.yaml", config(world["model"], world["data"], out)))
    assert res.exit_code == 2 and f"Received: '{entry}' is a symbolic link (to '{mine}')" in res.output, res.output
    assert snapshot(mine) == before


@pytest.mark.parametrize("name", ["report.json", "report.html"])
def test_a_report_named_entry_that_is_not_a_file_is_refused_before_any_stage(world, name):
    """A folder named like the report made the run fail at its very end, after every stage, with a bare
    IsADirectoryError. Now it is refused first, and what the folder holds is kept."""
    out = world["root"] / "out"
    (out / name).mkdir(parents=True)
    (out / name / "mine.txt").write_text("keep me")
    (out / ".edgepipe.lock").write_text("")
    before = snapshot(out)
    res = run_cli("run", write_yaml(world["root"] / "p.yaml", config(world["model"], world["data"], out)))
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and f"its {name!r} a file edgepipe wrote. Received: {name!r} is a directory" in said, \
        res.output
    assert snapshot(out) == before


@pytest.mark.parametrize("put, named", [
    (lambda a: (a / "tflite-arm-fp32" / "notes.txt").write_text("keep me"), "'tflite-arm-fp32/notes.txt'"),
    (lambda a: (a / "onnx-cpu-int8").mkdir() or (a / "onnx-cpu-int8" / "mine.onnx").write_text("keep me"),
     "'onnx-cpu-int8/ (no artifact.json edgepipe wrote)'"),
    (lambda a: (a / "openvino-cpu-int8").write_text("keep me"), "'openvino-cpu-int8'"),
])
def test_what_a_user_put_among_the_artifacts_is_named_and_kept(world, put, named):
    """Publishing replaces an artifact folder whole: a file the user had put into it was deleted without a word.
    Now the run is refused before anything is written; a published folder as it was, and names starting with '.'
    (never an artifact's), are fine."""
    from edgepipe.engine.outdir import check_output_dir
    from tests.fixtures.hostile import hand_made_artifact

    out = hand_made_artifact(world["root"])["dir"].parents[1]
    (out / ".edgepipe.lock").write_text("")
    (out / "artifacts" / ".my-notes").write_text("a dot name: never published over")
    check_output_dir(out, {})  # edgepipe's own artifact folder: accepted
    put(out / "artifacts")
    before = snapshot(out)
    res = run_cli("run", write_yaml(world["root"] / "p.yaml", config(world["model"], world["data"], out)))
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "1 entry edgepipe did not write" in said and named in said, res.output
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_the_output_lock_is_never_written_through_a_link_or_into_a_fifo(world, kind):
    """The run truncates and rewrites .edgepipe.lock: through a link that overwrote a user's file outside the
    output folder; a FIFO there was an OSError traceback."""
    out, precious = world["root"] / "out", world["root"] / "precious.txt"
    precious.write_text("user data")
    out.mkdir()
    if kind == "link":
        (out / ".edgepipe.lock").symlink_to(precious)
    else:
        os.mkfifo(out / ".edgepipe.lock")
    res = run_cli("run", write_yaml(world["root"] / "p.yaml", config(world["model"], world["data"], out)))
    said = "is a symbolic link; edgepipe writes its lock only as a regular file" if kind == "link" else \
        "Received: .edgepipe.lock is a FIFO (named pipe)"
    assert res.exit_code == 2 and said in " ".join(res.output.split()), res.output
    assert precious.read_text() == "user data"


def test_a_refused_run_never_touches_folders_named_like_leftovers(world):
    """The issue's data loss: sub-folders of the output named like old leftovers, deleted by a refused run."""
    out = world["root"] / "out"
    out.mkdir()
    (out / ".edgepipe.lock").write_text("")  # an earlier edgepipe run's folder
    for rel in (".tmp-experiment-12", ".old-results-34", "artifacts/.tmp-mine-999999999", "stages/.tmp-s-k-1"):
        (out / rel).mkdir(parents=True)
        (out / rel / "keep.txt").write_text("mine")
    before = snapshot(out)
    (world["data"] / "red" / "0.png").write_bytes(b"")  # fine for listing: refused later, when decoded
    (world["root"] / "labels.txt").write_text("only-one\n")
    cfg = config(world["model"], world["data"], out)
    cfg["data"]["labels"] = str(world["root"] / "labels.txt")
    res = run_cli("run", write_yaml(world["root"] / "p.yaml", cfg))
    assert res.exit_code == 2 and "at least 2 class labels" in res.output, res.output
    assert snapshot(out) == before


def test_a_sweep_is_checked_before_its_output_folder_exists(world):
    base = config(world["model"], world["data"], world["root"] / "unused")
    base["model"]["path"] = str(world["root"] / "missing.keras")
    sweep = write_yaml(world["root"] / "s.yaml", {"base": base, "output": str(world["root"] / "sweep-out")})
    res = run_cli("sweep", sweep)
    assert res.exit_code == 2 and "no such file or directory" in res.output, res.output
    assert not (world["root"] / "sweep-out").exists()
