"""The issue-5 'done when' on the real elpv-xception example (`tox -e slow`): a run writes
report.json with CIs, report.html (rendered in Chromium) and a model card per artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepipe.reports.model_card import read_front_matter
from tests.fixtures.chromium import render

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_elpv_run_writes_reports_with_confidence_intervals(tmp_path, chromium):
    from PIL import Image

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "edgepipe.cli.app", "run", "--output", str(out)], env=env,
                          capture_output=True, text=True, timeout=3 * 3600)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert "report.html" in proc.stdout + proc.stderr
    for row in report["artifacts"]:
        acc, lat = row["accuracy"], row["latency"]
        assert acc["top5_k"] == 4 and len(acc["per_class"]) == 4 and np.sum(acc["confusion"]) == acc["n_images"]
        assert lat["p50_ci95_ms"][0] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        assert lat["end_to_end"]["preprocess_p50_ms"] > 0
        if row["status"] == "reference":
            continue
        lo, hi = acc["drop_ci95_points"]
        assert lo <= acc["drop_points"] <= hi and lat["peak_rss_mb"] > 0
        card = read_front_matter(Path(row["dir"]) / "README.md")
        assert card["metrics"]["top1"] == pytest.approx(acc["top1"], abs=1e-4)
        assert card["metrics"]["top1_drop_ci95_points"] == pytest.approx([lo, hi], abs=1e-3)
        assert card["dataset"]["validation"]["n_images"] == acc["n_images"] >= 600
    shot = tmp_path / "shot.png"
    render(chromium, out / "report.html", tmp_path, f"--screenshot={shot}")
    small = np.asarray(Image.open(shot).convert("RGB").resize((320, 600)))
    assert len({tuple(p) for p in small.reshape(-1, 3)}) > 200
    dom = render(chromium, out / "report.html", tmp_path, "--dump-dom").stdout
    assert '<table id="summary"' in dom and "openvino-cpu/int8" in dom and "tflite-arm/int8" in dom
