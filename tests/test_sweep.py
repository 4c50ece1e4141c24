"""Sweeps without Ray: matrix expansion and its errors, Pareto fronts and the best candidate,
board tasks, and one real tiny sweep on the process-pool executor (shared stage cache,
pluggable board benchmark)."""

from __future__ import annotations

import io
import json
import time

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.core.errors import ConfigError
from edgepipe.executors.base import Failure
from edgepipe.executors.board_resources import attach, board_tasks
from edgepipe.sweeps.config import SweepBoard, parse_sweep
from edgepipe.sweeps.leaderboard import best, leaderboard_table, pareto_front, summarize
from tests.fixtures.configs import tiny_config

pytestmark = pytest.mark.heavy(seconds=36)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

RECIPES = [
    {"name": "fast", "options": {"precisions": ["int8"]},
     "targets": {"openvino-cpu": {"recipe": "default"}, "tflite-arm": {"int8_io": True}}},
    {"name": "careful", "options": {"precisions": ["int8"]},
     "targets": {"openvino-cpu": {"recipe": "nncf-mixed"}, "tflite-arm": {"int8_io": False}}},
]


def fake_bench(board: dict, artifact: dict) -> dict:
    """A stand-in device benchmark (module level: workers import it): records when it held the board."""
    start = time.time()
    time.sleep(0.3)
    return {"p50_ms": 1.0, "start": start, "end": time.time(), "sha256": artifact["sha256"], "url": board["url"]}


def _base(tmp_path, **kw) -> dict:
    assets = {"model": tmp_path / "m.keras", "data": tmp_path / "data"}
    (tmp_path / "m.keras").write_bytes(b"not used by expansion")
    (tmp_path / "data").mkdir(exist_ok=True)
    return tiny_config(assets, tmp_path / "unused", **kw)


def _sweep(tmp_path, **raw):
    return parse_sweep({"base": _base(tmp_path), "output": "out", **raw}, base_dir=tmp_path, source="s.yaml")


# ---- expansion ----------------------------------------------------------------------------
def test_matrix_expands_recipes_times_targets_with_merged_options(tmp_path):
    sw = _sweep(tmp_path, recipes=RECIPES, targets=["openvino-cpu", "tflite-arm"])
    assert [c.id for c in sw.cells] == ["m/fast/openvino-cpu", "m/fast/tflite-arm",
                                        "m/careful/openvino-cpu", "m/careful/tflite-arm"]
    opts = {c.id: c.config.targets[0].options for c in sw.cells}
    assert opts["m/careful/openvino-cpu"]["recipe"] == "nncf-mixed"
    assert opts["m/fast/openvino-cpu"]["recipe"] == "default"
    assert opts["m/careful/tflite-arm"]["int8_io"] is False and opts["m/fast/tflite-arm"]["int8_io"] is True
    assert all(o["precisions"] == ["int8"] for o in opts.values())
    for c in sw.cells:
        assert len(c.config.targets) == 1 and c.config.executor == "local"
        assert c.config.output == tmp_path / "out" / "cells" / c.model / c.recipe / c.target


def test_models_axis_and_defaults(tmp_path):
    (tmp_path / "other.keras").write_bytes(b"x")
    sw = _sweep(tmp_path, models=[{"path": "m.keras"}, {"name": "b", "path": "other.keras"}])
    # default recipe, the base's targets
    assert [c.id for c in sw.cells] == ["m/default/tflite-arm", "m/default/openvino-cpu",
                                        "b/default/tflite-arm", "b/default/openvino-cpu"]
    assert sw.cells[2].config.model.path == tmp_path / "other.keras"


@pytest.mark.parametrize("raw, expected", [
    ({"recipes": [{"name": "r", "targets": {"tflite-arm": {"preset": "mixed"}}}]},
     r"cell m/r/tflite-arm: targets.0: options for target 'tflite-arm'.*preset: unknown key"),
    ({"recipes": [{"name": "r", "targets": {"openvino-gpu": {}}}]},
     r"recipes.r.targets: expected target names of this sweep \['tflite-arm', 'openvino-cpu'\]. "
     r"Received: \['openvino-gpu'\]"),
    ({"recipes": [{"name": "r"}, {"name": "r"}]}, r"recipes: expected unique names. Received duplicates: \['r'\]"),
    ({"executor": "dask"}, r"executor: expected 'local', 'process'.*Received: 'dask'"),
    ({"boards": [{"name": "pi", "url": "ssh://pi@pi"}]}, r"expected 'board_bench: module:function'"),
    ({"boards": [{"name": "pi", "url": "ssh://pi@pi", "targets": ["coral"]}], "board_bench": "m:f"},
     r"boards.pi.targets: expected target names of this sweep .*Received: \['coral'\]"),
    ({"recipe": []}, r"recipe: unknown key"),
    ({"recipes": [{"name": f"r{i}"} for i in range(501)]},  # each cell a whole run: a typo must not queue days
     r"models x recipes x targets: expected at most 1000 cells .*Received: 1 x 501 x 2 = 1002 cells"),
])
def test_bad_sweeps_are_config_errors_that_say_what_was_expected(tmp_path, raw, expected):
    with pytest.raises(ConfigError, match=expected):
        _sweep(tmp_path, **raw)


# ---- leaderboard --------------------------------------------------------------------------
def _row(i, top1, p50, status="passed", target="t", size=1.0):
    return {"id": i, "artifact": f"{target}/int8", "target": target, "status": status, "size_mb": size,
            "accuracy": {"top1": top1, "drop_points": 0.0}, "latency": {"p50_ms": p50, "p90_ms": p50 + 1}}


def test_pareto_front_and_best_under_gates():
    rows = [_row("A", 0.90, 10), _row("B", 0.95, 20), _row("C", 0.85, 15),  # C: dominated by A
            _row("D", 0.99, 30, status="failed"),  # failed a gate: still a point on the front
            {"id": "E", "artifact": "t/int8", "target": "t", "status": "error", "reasons": ["crash"]}]
    assert [r["id"] for r in pareto_front(rows)] == ["A", "B", "D"]
    assert best(rows)["id"] == "A"  # the fastest that passed every gate
    assert best([_row("A", 0.9, 10, status="failed"), _row("B", 0.95, 20)])["id"] == "B"
    assert best([_row("X", 0.9, 10), _row("Y", 0.95, 10)])["id"] == "Y"  # tie on latency: more accurate
    assert best([rows[3], rows[4]]) is None
    s = summarize(rows + [_row("F", 0.5, 1, target="u")])
    assert s["t"] == {"candidates": 4, "pareto": ["A", "B", "D"], "best": "A"}
    assert s["u"]["best"] == "F"


def test_leaderboard_table_marks_front_and_best():
    rows = [dict(_row("A", 0.9, 10), model="m", recipe="r1"), dict(_row("C", 0.85, 15), model="m", recipe="r2")]
    sweep = {"executor": "local", "references": [], "rows": rows, "targets": summarize(rows)}
    buf = io.StringIO()
    Console(file=buf, width=200).print(leaderboard_table(sweep))
    lines = {ln.split("│")[2].strip(): ln for ln in buf.getvalue().splitlines() if ln.count("│") > 5}
    assert "★ best" in lines["r1"] and "★" not in lines["r2"]


def test_board_tasks_cover_built_artifacts_on_boards_that_take_their_target():
    boards = [SweepBoard(name="pi", url="ssh://pi@pi", targets=["tflite-arm"]), SweepBoard(name="nuc", url="ssh://n@nuc")]
    rows = [dict(_row("a", 0.9, 1, target="tflite-arm"), dir="/x/a", sha256="aa"),
            dict(_row("b", 0.9, 1, target="openvino-cpu"), dir="/x/b", sha256="bb"),
            {"id": "c", "artifact": "tflite-arm/*", "target": "tflite-arm", "status": "error"}]
    pairs = board_tasks("tests.test_sweep:fake_bench", boards, rows)
    assert [(r["id"], b) for r, b, _ in pairs] == [("a", "pi"), ("a", "nuc"), ("b", "nuc")]
    assert [t.resources for *_, t in pairs] == [{"board:pi": 1}, {"board:nuc": 1}, {"board:nuc": 1}]
    assert all(t.num_cpus == 0 for *_, t in pairs)
    new = attach(rows, [{"p50_ms": 2.0}, Failure("x", "died", "worker died", 3), {"p50_ms": 3.0}], pairs)
    assert new[0]["boards"] == {"pi": {"p50_ms": 2.0}, "nuc": {"error": "worker died", "attempts": 3}}
    assert new[1]["boards"] == {"nuc": {"p50_ms": 3.0}} and "boards" not in new[2]
    assert all("boards" not in r for r in rows)  # new rows, the given ones unchanged
    # where the executor says a benchmark ran (a Ray node), its result says so too; a failure has no place
    where = {"node_id": "n1", "node_ip": "127.0.0.3", "host": "h", "pid": 7}
    new = attach(rows, [{"p50_ms": 2.0}, Failure("x", "died", "worker died", 3), {"p50_ms": 3.0}], pairs,
                 [where, None, where])
    assert new[0]["boards"]["pi"] == {"p50_ms": 2.0, "worker": where} and "worker" not in new[0]["boards"]["nuc"]


# ---- a real tiny sweep on the process pool ---------------------------------------------------
def test_tiny_sweep_on_process_pool_shares_stages_and_benches_boards(tiny_assets, tmp_path):
    base = tiny_config(tiny_assets, tmp_path / "unused", threads=1,
                       targets=[{"name": "openvino-cpu", "options": {"precisions": ["int8"]}}])
    sweep = {"base": base, "output": str(tmp_path / "sweep"), "executor": "process=2",
             "recipes": [{"name": "perf", "targets": {"openvino-cpu": {"recipe": "default"}}},
                         {"name": "mixed", "targets": {"openvino-cpu": {"recipe": "nncf-mixed"}}}],
             "boards": [{"name": "nuc-01", "url": "ssh://bench@nuc-01", "tags": ["x86"]}],
             "board_bench": "tests.test_sweep:fake_bench"}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "sweep.yaml")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert report["executor"] == "process=2" and report["failed_cells"] == 0
    rows = {r["id"]: r for r in report["rows"]}
    assert sorted(rows) == ["tiny_xception/mixed/openvino-cpu/int8", "tiny_xception/perf/openvino-cpu/int8"]
    assert all(r["status"] == "passed" and r["accuracy"]["n_images"] == 54 for r in rows.values())
    for r in rows.values():
        assert (tmp_path / "sweep" / "cells" / "tiny_xception" / r["recipe"] / "openvino-cpu" / "artifacts"
                / "openvino-cpu-int8" / "artifact.json").is_file()
    # the FP32 IR both presets quantize was computed once, in one worker, for both cells
    stages = [(s["stage"], s["cached"]) for s in report["stages"]]
    assert stages.count(("ov-ir-fp32", False)) == 1 and ("ov-ir-fp32", True) not in stages
    assert stages.count(("savedmodel", False)) == 1 and stages.count(("nncf-int8", False)) == 2
    # the board ran each artifact, one at a time
    runs = [r["boards"]["nuc-01"] for r in rows.values()]
    assert sorted(b["sha256"] for b in runs) == sorted(r["sha256"] for r in rows.values())
    a, b = sorted(runs, key=lambda x: x["start"])
    assert a["end"] <= b["start"] and a["url"] == "ssh://bench@nuc-01"
    summary = report["targets"]["openvino-cpu"]
    assert summary["best"] in rows and summary["candidates"] == 2 and summary["pareto"]
    assert "openvino-cpu: best tiny_xception/" in res.output and "Pareto front" in res.output


def test_run_fans_targets_out_to_the_process_pool(tiny_assets, tmp_path):
    targets = [{"name": "tflite-arm", "options": {"precisions": ["fp32"]}},
               {"name": "openvino-cpu", "options": {"precisions": ["fp32"]}}]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_assets, tmp_path / "out", threads=1, targets=targets)))
    res = CliRunner().invoke(app, ["run", str(path), "--executor", "process=2"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["artifact"] for r in report["artifacts"]] == ["keras/fp32 (reference)", "tflite-arm/fp32",
                                                            "openvino-cpu/fp32"]
    assert all(r["status"] == "passed" and r["accuracy"]["agreement"] == 1.0 for r in report["artifacts"][1:])
    stages = [s["stage"] for s in report["stages"]]
    assert len(stages) == len(set(stages))  # one entry per stage, whichever worker ran it
    assert {"savedmodel", "tflite-fp32", "ov-ir-fp32", "latency-openvino-cpu-fp32"} <= set(stages)
    assert report["data"]["validation"]["count"] == 54
    assert "fan-out" in res.output and "2 target(s) on executor process=2" in res.output


def test_bad_executor_on_the_command_line_exits_2(tiny_assets, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_assets, tmp_path / "out")))
    res = CliRunner().invoke(app, ["run", str(path), "--executor", "spark"], catch_exceptions=False)
    assert res.exit_code == 2 and "Received: 'spark'" in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("ref, said", [
    ("nosuchmod:fn", "Received: 'nosuchmod:fn' (ModuleNotFoundError: No module named 'nosuchmod')"),
    ("tests.test_sweep:no_such_bench", "Received: 'tests.test_sweep:no_such_bench' (AttributeError"),
    ("tests.test_sweep:RECIPES", "board_bench: expected a function. Received: 'tests.test_sweep:RECIPES' is a list"),
])
def test_an_unimportable_board_bench_is_refused_before_any_cell_runs(tmp_path, ref, said):
    boards = [{"name": "pi", "url": "ssh://pi@pi"}]
    with pytest.raises(ConfigError, match=r"s\.yaml: board_bench: expected ") as err:
        _sweep(tmp_path, boards=boards, board_bench=ref)
    assert said in str(err.value)
    # on an existing Ray cluster the module need only be on the nodes that own boards: not checked here
    assert _sweep(tmp_path, boards=boards, board_bench=ref, executor="ray=127.0.0.1:6379").spec.board_bench == ref
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump({"base": _base(tmp_path), "output": str(tmp_path / "out"), "boards": boards,
                                   "board_bench": ref}))
    res = CliRunner().invoke(app, ["sweep", str(cfg)])
    assert res.exit_code == 2 and said in " ".join(res.output.split()), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert not (tmp_path / "out").exists()
