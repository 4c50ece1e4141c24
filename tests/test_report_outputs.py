"""A run's outputs people read: report.json fields, report.html (rendered in headless
Chromium), the model card per artifact; and exit code 3 when an artifact cannot be validated."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.reports.html import write_html
from edgepipe.reports.model_card import read_front_matter
from tests.fixtures import tiny_xception
from tests.fixtures.chromium import render
from tests.fixtures.configs import tiny_config, write_config
from tests.fixtures.tiny_runs import seed_stages

pytestmark = pytest.mark.heavy(seconds=11)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tiny_assets, tiny_full_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("reports")
    seed_stages(tiny_full_run, d / "out")  # conversions cached; the latency stages (a thread sweep here) run
    cfg = tiny_config(tiny_assets, d / "out", latency={"warmup": 2, "runs": 50, "thread_sweep": [1]})
    res = runner.invoke(app, ["run", str(write_config(d / "p.yaml", cfg))], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return {"dir": d, "out": d / "out", "cfg": cfg, "output": res.output,
            "report": json.loads((d / "out" / "report.json").read_text())}


def test_report_json_holds_the_new_metrics(run):
    import psutil

    own_rss_mb = psutil.Process().memory_info().rss / 1e6
    rows = run["report"]["artifacts"]
    assert [r["status"] for r in rows] == ["reference", "passed", "passed", "passed", "passed"]
    for r in rows:
        acc, lat = r["accuracy"], r["latency"]
        assert acc["top5_k"] == 3 and acc["top5"] == 1.0 and len(acc["per_class"]) == 3
        assert np.array(acc["confusion"]).sum() == acc["n_images"] == 54
        assert lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] and lat["runs"] == 50
        assert lat["p50_ci95_ms"][0] <= lat["p50_ms"] <= lat["p50_ci95_ms"][1]
        assert lat["throughput_ips"] == pytest.approx(1e3 / lat["mean_ms"])
        e2e = lat["end_to_end"]
        assert e2e["runs"] == 50 and 0 < e2e["preprocess_p50_ms"] < e2e["p50_ms"]
    for r in rows[1:]:
        acc, lat = r["accuracy"], r["latency"]
        lo, hi = acc["drop_ci95_points"]
        assert lo <= acc["drop_points"] <= hi and acc["drop_within_noise"] == (lo <= 0 <= hi)
        assert lat["rss_scope"] == "child process" and lat["peak_rss_mb"] > lat["rss_baseline_mb"] > 0
        # the child's own peak, not inherited from this TensorFlow-laden process
        assert lat["peak_rss_source"] == "VmHWM" and lat["peak_rss_mb"] < own_rss_mb
        assert [s["threads"] for s in lat["thread_sweep"]] == [1]
        assert ("parity" in r) == (r["precision"] == "fp32")
    fp32 = next(r for r in rows if r["artifact"] == "tflite-arm/fp32")
    assert fp32["parity"]["passed"] and fp32["parity"]["cosine_min"] > 0.9999
    assert rows[0]["latency"]["rss_scope"] == "in-process delta"


def test_every_timed_artifact_has_its_roofline_share(run, tiny_assets):
    """The latency stage counts the artifact's MACs (the same network in every format); the row's latency holds
    the p50 as a share of this host's peak for its precision, and the terminal and report.html say it."""
    import keras

    from edgepipe.validators import roofline

    macs = tiny_xception.keras_macs(keras.saving.load_model(tiny_assets["model"], compile=False))
    rows = run["report"]["artifacts"]
    peak = roofline.host_peak()
    for r in rows[1:]:
        lat = r["latency"]
        assert lat["macs_per_image"] == macs, (r["artifact"], lat.get("macs_note"))
        if peak is None:  # a CPU without a row in roofline.PEAKS: no share, and nothing claims one
            assert "roofline" not in lat
            continue
        roof = lat["roofline"]
        assert roof["of_peak"] == r["precision"] and roof["macs_per_image"] == macs
        assert roof["share"] == pytest.approx(roofline.share(lat["p50_ms"], macs, roof["peak_macs_per_s"]), abs=1e-4)
        assert roof["cores"] == min(lat["threads"], os.cpu_count())
    assert "roofline" not in rows[0]["latency"] and "macs_per_image" not in rows[0]["latency"]  # the Keras call
    html = (run["out"] / "report.html").read_text()
    if peak is not None:
        (line,) = [x for x in run["output"].splitlines() if x.startswith("roofline: ")]
        for r in rows[1:]:
            assert f"{r['artifact']} {100 * r['latency']['roofline']['share']:.0f}% of {r['precision'].upper()}" in line
        assert f"{macs / 1e9:.3g} GMAC per image over" in run["output"]
        assert 'id="roofline"' in html and "% of INT8" in html
    else:
        assert "roofline:" not in run["output"] and 'id="roofline"' not in html


def test_summary_names_report_html_and_artifacts(run):
    assert "report.html" in run["output"] and "report.json" in run["output"] and "artifacts" in run["output"]


def test_model_card_front_matter_holds_the_measured_numbers(run):
    by_name = {r["artifact"]: r for r in run["report"]["artifacts"]}
    for name in ("tflite-arm/fp32", "tflite-arm/int8", "openvino-cpu/fp32", "openvino-cpu/int8"):
        row = by_name[name]
        card = read_front_matter(Path(row["dir"]) / "README.md")
        assert card["model"]["name"] == name and card["model"]["sha256"] == row["sha256"]
        assert card["target"] == row["target"] and card["precision"] == row["precision"]
        assert card["dataset"]["validation"]["n_images"] == 54
        m, acc, lat = card["metrics"], row["accuracy"], row["latency"]
        assert m["top1"] == pytest.approx(acc["top1"], abs=1e-4)
        assert m["top3"] == pytest.approx(acc["top5"], abs=1e-4)
        assert m["top1_drop_ci95_points"] == pytest.approx(acc["drop_ci95_points"], abs=1e-3)
        assert m["drop_within_noise"] == acc["drop_within_noise"]
        assert m["latency_ms"]["p50"] == pytest.approx(lat["p50_ms"], abs=1e-3)
        assert m["latency_ms"]["p99"] == pytest.approx(lat["p99_ms"], abs=1e-3)
        assert m["peak_rss_mb"] == pytest.approx(lat["peak_rss_mb"], abs=0.1)
        assert ("output_parity" in m) == (row["precision"] == "fp32")
        assert any("not on the target device" in x for x in card["limits"])
        assert card["status"] == "passed"


def test_html_is_self_contained(run):
    html = (run["out"] / "report.html").read_text()
    assert "<script" not in html and "<link" not in html and "src=" not in html
    assert "https://" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert html.count("<svg") >= 2 and "Pareto front" in html


def _decorated(report: dict) -> dict:
    """The report as issue 3/6/8 extend it: per-layer data, remote device rows, an emulated row."""
    rep = copy.deepcopy(report)
    int8 = next(r for r in rep["artifacts"] if r["artifact"] == "tflite-arm/int8")
    int8["per_layer"] = [{"layer": f"block{i}_sepconv1", "mse": 0.001 * i, "cosine": 1 - 0.001 * i,
                          "snr_db": 40.0 - 2.5 * i} for i in range(12)]
    emu = copy.deepcopy(int8)
    emu.update(artifact="tflite-arm/int8 @ arm64", target="arm64-emulated")
    emu.pop("per_layer")
    rep["artifacts"].append(emu)
    rep["devices"] = [{"device": "ssh://root@127.0.0.1:2222", "artifact": "tflite-arm/int8", "status": "passed",
                       "latency": {"p50_ms": 12.5, "p90_ms": 13.1}},
                      {"device": "ssh://pi@board-2", "artifact": "tflite-arm/int8", "status": "unreachable",
                       "reason": "Connection refused"}]
    return rep


def test_html_renders_in_headless_chromium(run, chromium, tmp_path):
    from PIL import Image

    html = write_html(_decorated(run["report"]), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    res = render(chromium, html, tmp_path, f"--screenshot={shot}")
    assert shot.is_file(), res.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2400)
    small = np.asarray(img.resize((320, 600)))
    colours = len({tuple(p) for p in small.reshape(-1, 3)})
    non_white = float((small.min(axis=2) < 235).mean())
    assert colours > 200, colours  # text, tables, chart colours: not a blank page
    assert non_white > 0.05, non_white

    dom = render(chromium, html, tmp_path, "--dump-dom").stdout
    assert "<table id=\"summary\"" in dom
    for name in ("tflite-arm/fp32", "tflite-arm/int8", "openvino-cpu/fp32", "openvino-cpu/int8", "keras/fp32"):
        assert name in dom
    assert "accuracy vs latency" in dom and "per-class accuracy" in dom
    assert "per-layer error tflite-arm/int8" in dom and "block11_sepconv1" in dom
    assert "<table id=\"devices\"" in dom and "ssh://pi@board-2" in dom and "unreachable" in dom
    assert "tflite-arm/int8 @ arm64<span class=\"emu\">emulated</span>" in dom
    assert "<table id=\"environment\"" in dom and run["report"]["environment"]["cpu"] in dom


def test_artifact_that_cannot_be_validated_gives_exit_3(run, tmp_path, monkeypatch):
    """A built artifact whose device cannot be reached is a row with its reason; the others
    still run and pass; the run is partial (exit 3), not failed."""
    import edgepipe.targets.openvino_cpu as ov_target
    from edgepipe.core.errors import DeviceUnavailableError

    def unreachable(artifact, threads, *options):
        raise DeviceUnavailableError(f"{artifact.name}: device CPU@board-7 unreachable (connection refused)")

    monkeypatch.setattr(ov_target, "make_runner", unreachable)
    out = tmp_path / "out"
    shutil.copytree(run["out"] / "stages", out / "stages")  # reuse the built artifacts
    cfg = dict(run["cfg"], output=str(out), latency={"warmup": 2, "runs": 50},
               targets=[{"name": "tflite-arm"}, {"name": "openvino-cpu", "options": {"hint": "THROUGHPUT"}}])
    res = runner.invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))], catch_exceptions=False)
    assert res.exit_code == 3, res.output
    report = json.loads((out / "report.json").read_text())
    status = {r["artifact"]: r["status"] for r in report["artifacts"]}
    assert status == {"keras/fp32 (reference)": "reference", "tflite-arm/fp32": "passed",
                      "tflite-arm/int8": "passed", "openvino-cpu/fp32": "partial",
                      "openvino-cpu/int8": "partial"}
    row = next(r for r in report["artifacts"] if r["artifact"] == "openvino-cpu/int8")
    assert "unreachable" in row["reasons"][0] and report["exit_code"] == 3
    assert "exit code 3" in (out / "report.html").read_text()
