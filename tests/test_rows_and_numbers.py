"""The typed report row, the validator registry and the one number formatter.

- `ReportRow` round-trips every kind of row a run or sweep writes (keys, values and key order);
  changes make new rows.
- A validator added to `edgepipe.validators.registry.VALIDATORS` shows up in the row, in artifact.json,
  and its gate failure fails the row, without touching any other module (a real run, all stages cached).
- Renderers format numbers only through `pipeline/reports/numbers.py` (an `ast` walk).
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.reports import numbers
from edgepipe.reports.rows import ReportRow
from edgepipe.validators import registry
from edgepipe.validators.base import ValidationInputs, ValidatorResult
from tests.fixtures.configs import tiny_config, write_config

ROOT = Path(__file__).resolve().parents[1]

# one row of every kind a run or sweep writes, keys in the order the producers set them
ROWS = {
    "artifact": {"artifact": "tflite-arm/int8", "target": "tflite-arm", "precision": "int8", "reasons": [],
                 "size_mb": 0.51, "sha256": "ab" * 32, "format": "tflite", "status": "passed",
                 "accuracy": {"top1": 0.78, "drop_points": 0.0, "drop_ci95_points": [0.0, 0.0]},
                 "latency": {"p50_ms": 1.0, "p90_ms": 1.1}, "calibration_sha256": "cd" * 32,
                 "recipe": {"name": "default", "per_channel": True}, "target_info": {"min_runtime": "2.10"},
                 "per_layer": [{"layer": "conv", "snr_db": 31.5}], "dir": "/out/artifacts/tflite-arm-int8",
                 "cross_quantizer": {"gap_points": 0.0, "flagged": False}},
    "float": {"artifact": "onnx-cpu/fp32", "target": "onnx-cpu", "precision": "fp32", "reasons": [],
              "size_mb": 1.4, "sha256": "ef" * 32, "format": "onnx", "status": "passed", "accuracy": {"top1": 0.7},
              "latency": {"p50_ms": 0.5}, "calibration_sha256": None, "recipe": None,
              "parity": {"cosine_min": 1.0, "passed": True}, "per_layer_error": "RuntimeError: no", "dir": "/d"},
    "reference": {"artifact": "keras/fp32 (reference)", "target": "reference", "precision": "fp32",
                  "reasons": [], "size_mb": 4.5, "sha256": "01" * 32, "status": "reference",
                  "accuracy": {"top1": 0.78}, "latency": {"p50_ms": 60.0}},
    "partial": {"artifact": "coral-edgetpu/int8", "target": "coral-edgetpu", "precision": "int8",
                "reasons": ["skipped: no Edge TPU"], "status": "partial"},
    "error": {"artifact": "openvino-cpu/int8", "target": "openvino-cpu", "precision": "int8",
              "reasons": ["ValueError: bad"], "size_mb": 2, "sha256": "23" * 32, "format": "openvino-ir",
              "status": "error", "traceback": "Traceback ..."},
    "failed target": {"artifact": "openvino-cpu/*", "target": "openvino-cpu", "precision": None,
                      "reasons": ["worker died"], "status": "error",
                      "failure": {"task": "openvino-cpu", "kind": "died", "reason": "worker died", "attempts": 3}},
    "check": {"artifact": "tflite-arm/int8 (arm64, emulated)", "target": "arm64-emulated", "precision": "int8",
              "reasons": [], "size_mb": 0.5, "sha256": "45" * 32, "format": "tflite", "status": "passed",
              "note": "bit-exact", "unavailable": None, "arm64": {"images": 8}, "emulated_latency": {"p50_ms": 90},
              "host_latency": {"p50_ms": 1.0}},
    "sweep": {"artifact": "openvino-cpu/int8", "target": "openvino-cpu", "precision": "int8", "reasons": [],
              "status": "passed", "recipe": "mixed", "id": "m/mixed/openvino-cpu/int8", "model": "m",
              "cell": "m/mixed/openvino-cpu", "boards": {"pi": {"p50_ms": 2.0}, "nuc": {"error": "x", "attempts": 3}}},
    "minimal": {"id": "E", "artifact": "t/int8", "target": "t", "status": "error", "reasons": ["crash"]},
    "new validator": {"artifact": "a/int8", "target": "a", "precision": "int8", "reasons": [], "status": "passed",
                      "toy": {"answer": 42}, "toy_error": "no"},
}


@pytest.mark.parametrize("kind", list(ROWS))
def test_report_row_round_trips_every_kind_of_row(kind):
    raw = ROWS[kind]
    row = ReportRow.from_json(raw)
    assert row.to_json() == raw
    assert ReportRow.from_json(row.to_json()) == row
    # canonical order: a row the pipeline wrote comes back byte for byte
    assert json.dumps(ReportRow.from_json(row.to_json()).to_json()) == json.dumps(row.to_json())


def test_unset_keys_stay_absent_and_none_stays_null():
    assert ReportRow(artifact="a").to_json() == {"artifact": "a"}
    assert ReportRow(artifact="a", precision=None, recipe=None).to_json() == \
        {"artifact": "a", "precision": None, "recipe": None}
    assert ReportRow.from_json(ROWS["new validator"]).extra == {"toy": {"answer": 42}, "toy_error": "no"}


def test_rows_are_frozen_and_changes_make_new_rows():
    row = ReportRow.from_json(ROWS["artifact"])
    with pytest.raises(ValidationError):
        row.status = "failed"
    failed = row.with_verdict("cross_quantizer", {"flagged": True}, ["cross-quantizer: far below"])
    assert (failed.status, failed.reasons, failed.cross_quantizer) == \
        ("failed", ["cross-quantizer: far below"], {"flagged": True})
    assert row.to_json() == ROWS["artifact"]  # unchanged
    kept = row.with_verdict("cross_quantizer", {"flagged": False})
    assert kept.status == "passed" and kept.reasons == []
    assert list(row.replace(status="failed").to_json()) == list(ROWS["artifact"])  # keys keep their place
    with pytest.raises(ValidationError):
        row.replace(size_mb="big")


def test_number_formatter():
    assert numbers.fmt(None, ".2f") == numbers.MISSING == "—"
    assert numbers.fmt(0.12345, ".4f") == "0.1235" and numbers.fmt(3.0, "+.2f") == "+3.00"
    assert numbers.fmt("n/a", ".2f") == "n/a"  # not a number: shown as is, never an exception
    assert numbers.fmt_range([-1.5, 2.25], "+.2f") == "-1.50..+2.25"
    assert numbers.fmt_range([1, 2], ".1f", ", ") == "1.0, 2.0" and numbers.fmt_range(None, ".1f") == "—"
    assert numbers.tick(0.5) == "0.5" and numbers.tick(0.001) == "1.0e-03" and numbers.tick(0) == "0"
    assert numbers.coord(12.345) == "12.3"
    assert numbers.rounded(0.123456) == 0.1235 and numbers.rounded(None) is None
    assert numbers.significant(0.000123456, 3) == 0.000123


# ---- renderers format numbers only through pipeline/reports/numbers.py ----------------------------
RENDERERS = {  # module -> the functions that render (None: the whole module)
    "pipeline/reports/terminal.py": None,
    "pipeline/reports/html.py": None,
    "pipeline/reports/charts.py": None,
    "pipeline/reports/charts_dist.py": None,
    "pipeline/reports/model_card.py": None,
    "pipeline/sweeps/leaderboard.py": None,
    "pipeline/engine/standalone.py": {"render"},
    "pipeline/reports/profile.py": {"lines"},
}


def _own_formatting(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            found.append(f"line {node.lineno}: f-string format spec")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "format":
            found.append(f"line {node.lineno}: format()")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
                and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str):
            found.append(f"line {node.lineno}: str.format()")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
                and isinstance(node.left.value, str):
            found.append(f"line {node.lineno}: %-formatting")
    return found


@pytest.mark.parametrize("path", list(RENDERERS))
def test_renderers_format_numbers_only_through_numbers_py(path):
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    only = RENDERERS[path]
    scopes = [tree] if only is None else [n for n in ast.walk(tree)
                                          if isinstance(n, ast.FunctionDef) and n.name in only]
    assert only is None or {s.name for s in scopes} == only  # the renderer is still there
    found = [f for scope in scopes for f in _own_formatting(scope)]
    assert not found, f"{path} formats numbers itself (use edgepipe.reports.numbers): {found}"
    assert "edgepipe.reports.numbers" in (ROOT / path).read_text(encoding="utf-8")


def test_the_ast_check_catches_each_kind_of_own_formatting():
    src = 'a = f"{x:.2f}"\nb = format(x, "g")\nc = "{:.1f}".format(x)\nd = "%.1f" % x\ne = f"{x}"\n'
    assert sorted(_own_formatting(ast.parse(src))) == \
        ["line 1: f-string format spec", "line 2: format()", "line 3: str.format()", "line 4: %-formatting"]


# ---- a new validator is a new module plus a line in the list --------------------------------------
class ToyValidator:
    """A metric: the number of output classes, with a gate it always fails on INT8 artifacts."""

    name = "toy"
    diagnostic = False

    def applies(self, inputs: ValidationInputs) -> bool:
        return inputs.artifact.precision == "int8"

    def run(self, inputs: ValidationInputs) -> ValidatorResult:
        classes = int(inputs.scores.shape[1])
        return ValidatorResult(self.name, {"classes": classes, "images": int(len(inputs.scores))},
                               [f"toy gate: {classes} classes > max_toy 0"])


class BrokenDiagnostic:
    """A diagnostic that fails: recorded as `broken_error`, the row goes on."""

    name = "broken"
    diagnostic = True

    def applies(self, inputs: ValidationInputs) -> bool:
        return True

    def run(self, inputs: ValidationInputs) -> ValidatorResult:
        raise RuntimeError("diagnosis failed")


def test_a_registered_validator_shows_up_in_the_row_and_its_gate_fails_it(tiny_assets, tiny_int8_run, tmp_path,
                                                                           monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(tiny_int8_run["out"] / "stages", out / "stages")  # the same config and stages: all cached
    monkeypatch.setattr(registry, "VALIDATORS", [*registry.VALIDATORS, ToyValidator(), BrokenDiagnostic()])
    cfg = tiny_config(tiny_assets, out, targets=[{"name": "tflite-arm", "options": {"precisions": ["int8"]}}])
    res = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))], catch_exceptions=False)
    assert res.exit_code == 1, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["stages"] and all(s["cached"] for s in report["stages"])  # a new validator invalidates nothing
    row = next(r for r in report["artifacts"] if r["artifact"] == "tflite-arm/int8")
    assert row["toy"] == {"classes": 3, "images": row["accuracy"]["n_images"]}
    assert row["status"] == "failed" and row["reasons"] == ["toy gate: 3 classes > max_toy 0"]
    assert row["broken_error"] == "RuntimeError: diagnosis failed"
    assert row["accuracy"]["top1"] is not None and row["latency"]["p50_ms"] > 0 and row["per_layer"]
    assert ReportRow.from_json(row).extra == {"toy": row["toy"], "broken_error": row["broken_error"]}
    record = json.loads((Path(row["dir"]) / "artifact.json").read_text())
    assert record["metrics"]["toy"] == row["toy"] and "toy" not in record  # a metric
    assert record["broken_error"] == row["broken_error"] and "broken_error" not in record["metrics"]  # a diagnostic
    assert record["status"] == "failed" and record["gate_failures"] == row["reasons"]
    assert "toy gate" in res.output
    for r in report["artifacts"]:  # the rows a run writes round-trip byte for byte
        assert json.dumps(ReportRow.from_json(r).to_json()) == json.dumps(r)

