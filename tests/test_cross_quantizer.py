"""The cross-quantizer check on report rows (leave-one-out median of the other INT8 artifacts), run the
way a run runs it: every run validator over all rows, a new row for each judged one."""

from __future__ import annotations

import copy
from types import SimpleNamespace

from edgepipe.engine.orchestrate import apply_run_validators
from edgepipe.reports.rows import ReportRow
from edgepipe.validators.cross_quantizer import compare


def _row(name, top1, precision="int8", status="passed"):
    return {"artifact": name, "precision": precision, "status": status, "reasons": [],
            "accuracy": {"top1": top1}}


def check(rows: list[dict], max_gap) -> tuple[list[dict], dict]:
    """(the rows after the run validators, the cross-quantizer summary); `rows` stay as they were."""
    before = copy.deepcopy(rows)
    cfg = SimpleNamespace(gates=SimpleNamespace(cross_quantizer_max_gap=max_gap))
    new, summaries = apply_run_validators(cfg, [ReportRow.from_json(r) for r in rows])
    assert rows == before  # a new row, never a changed one
    return [r.to_json() for r in new], summaries["cross_quantizer"]


def test_one_far_worse_int8_artifact_fails_and_says_why():
    rows = [_row("keras/fp32 (reference)", 0.78, "fp32", "reference"), _row("tflite-arm/int8", 0.78),
            _row("openvino-cpu/int8", 0.01), _row("onnx-cpu/int8", 0.775)]
    rows, summary = check(rows, 5.0)
    assert summary["flagged"] == ["openvino-cpu/int8"]
    bad = rows[2]
    assert bad["status"] == "failed" and bad["cross_quantizer"]["gap_points"] > 70
    assert "76.8 pts below the median 0.7775 of the other INT8 artifacts" in bad["reasons"][0]
    assert rows[1]["status"] == rows[3]["status"] == "passed"
    assert rows[0].get("cross_quantizer") is None  # FP32 rows are not compared


def test_close_artifacts_pass_and_threshold_is_respected():
    rows = [_row("a/int8", 0.78), _row("b/int8", 0.74), _row("c/int8", 0.77)]
    assert check(rows, 5.0)[1]["flagged"] == []
    assert check([_row("a/int8", 0.78), _row("b/int8", 0.74), _row("c/int8", 0.77)], 2.0)[1]["flagged"] == ["b/int8"]


def test_two_artifacts_suffice_and_errors_or_none_disable():
    assert check([_row("a/int8", 0.8), _row("b/int8", 0.3)], 5.0)[1]["flagged"] == ["b/int8"]
    assert check([_row("a/int8", 0.8), _row("b/int8", 0.3)], None)[1]["skipped"] == "disabled"
    one = check([_row("a/int8", 0.8), {"artifact": "b/int8", "precision": "int8", "status": "error"}], 5.0)[1]
    assert one["skipped"] == "fewer than 2 INT8 artifacts" and one["flagged"] == []


def test_on_small_validation_sets_a_few_images_are_noise():
    rows = [_row("a/int8", 8 / 9), _row("b/int8", 7 / 9), _row("c/int8", 8 / 9)]
    for r in rows:
        r["accuracy"]["n_images"] = 9
    rows, summary = check(rows, 5.0)
    assert summary["flagged"] == []  # one image of nine: 11 points, but noise
    assert rows[1]["cross_quantizer"]["limit_points"] > 33
    broken = [_row("a/int8", 8 / 9), _row("b/int8", 0.0), _row("c/int8", 8 / 9)]
    for r in broken:
        r["accuracy"]["n_images"] = 9
    broken, summary = check(broken, 5.0)
    assert summary["flagged"] == ["b/int8"]
    assert "3 of 9 images, the noise floor" in broken[1]["reasons"][0]


def test_compare_is_pure_and_judges_only_int8_rows():
    rows = [_row("ref", 0.78, "fp32", "reference"), _row("a/int8", 0.78), _row("b/int8", 0.01)]
    before = copy.deepcopy(rows)
    verdict = compare(rows, 5.0)
    assert rows == before
    assert sorted(verdict.rows) == ["a/int8", "b/int8"]
    assert verdict.rows["a/int8"].gate_failures == [] and len(verdict.rows["b/int8"].gate_failures) == 1
