"""What people read and the tools they plug in, on one tiny run (tflite-arm FP32 + INT8, openvino-cpu
INT8, and coral-edgetpu, which this host can only build: a partial row with its reasons), logged with
`--mlflow` to a local store:

- report.html in headless Chromium at 1280 px: the partial row's reasons and the new charts are inside
  the viewport (measured in the page by a probe script added to a copy) and inked (screenshot);
- every latency result records the machine's load and keeps its raw timings; busy rows are flagged
  in every renderer (terminal table, HTML, model card, leaderboard);
- model cards parse with huggingface_hub.ModelCard and hold the recipe, minimum runtime, input scale and
  zero point (checked against the interpreter), and a how-to-run program that runs and agrees with edgepipe;
- the MLflow run read back with the mlflow client: params, metrics, tags, artifacts.

The renderers' parts without a run (charts, load records, escaping): tests/test_report_parts.py.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.reports import html, model_card
from edgepipe.reports.model_card import read_front_matter
from edgepipe.reports.numbers import fmt
from tests.fixtures.chromium import render
from tests.fixtures.configs import tiny_config, write_config
from tests.fixtures.tiny_runs import seed_stages

pytestmark = pytest.mark.heavy(seconds=9)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)

runner = CliRunner()
NAMES = ("keras/fp32 (reference)", "tflite-arm/fp32", "tflite-arm/int8", "openvino-cpu/int8", "coral-edgetpu/int8")


@pytest.fixture(scope="module")
def run(tiny_assets, tiny_full_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("views")
    seed_stages(tiny_full_run, d / "out")  # the host targets' stages cached; coral's and the thread sweep run
    targets = [{"name": "tflite-arm"}, {"name": "openvino-cpu", "options": {"precisions": ["int8"]}},
               {"name": "coral-edgetpu"}]
    cfg = tiny_config(tiny_assets, d / "out", targets=targets, latency={"warmup": 2, "runs": 50, "thread_sweep": [1]})
    store = d / "mlruns"
    res = runner.invoke(app, ["run", str(write_config(d / "p.yaml", cfg)), "--mlflow"],
                        env={"MLFLOW_TRACKING_URI": str(store)}, catch_exceptions=False)
    report = json.loads((d / "out" / "report.json").read_text())
    assert res.exit_code == report["exit_code"], res.output
    return {"dir": d, "out": d / "out", "cfg": cfg, "output": res.output, "report": report, "store": store,
            "rows": {r["artifact"]: r for r in report["artifacts"]}}


def test_the_run_has_a_partial_row_with_its_reasons(run):
    rows = run["rows"]
    assert list(rows) == list(NAMES)
    coral = rows["coral-edgetpu/int8"]
    assert coral["status"] == "partial" and any("edgetpu_compiler" in r for r in coral["reasons"])
    assert rows["tflite-arm/fp32"]["status"] == rows["tflite-arm/int8"]["status"] == "passed"
    # NNCF on the tiny model, retrained each session, sometimes loses points: a failed row is a row too
    assert rows["openvino-cpu/int8"]["status"] in ("passed", "failed")
    assert all("p50_ms" in rows[n]["latency"] and rows[n]["accuracy"]["top1"] is not None for n in NAMES[1:4])


# ---- load and raw timings in every latency result ------------------------------------------------
def test_every_latency_records_the_machines_load_and_its_raw_timings(run):
    measured = [r for r in run["report"]["artifacts"] if "p50_ms" in (r.get("latency") or {})]
    assert len(measured) == 4  # the reference (in-process) and three artifacts (child processes)
    for r in measured:
        lat = r["latency"]
        load = lat["load"]
        assert load["cores"] == os.cpu_count()
        for s in (load["before"], load["after"]):
            assert len(s["loadavg"]) == 3 and s["cpu_ticks"]["total"] > s["cpu_ticks"]["steal"] >= 0
            dt.datetime.fromisoformat(s["time"])
        assert load["before"]["time"] <= load["after"]["time"]
        assert load["busy"] == any(s["loadavg"][0] > load["cores"] for s in (load["before"], load["after"]))
        assert load["steal_pct"] is None or 0 <= load["steal_pct"] <= 100
        t = np.array(lat["timings_ms"])
        assert len(t) == lat["runs"] == 50 and np.median(t) == pytest.approx(lat["p50_ms"], rel=1e-3, abs=1e-3)
        assert t.min() == pytest.approx(lat["min_ms"], abs=1e-3)
    for r in measured[1:]:  # each thread-sweep measurement (in its own child) records its load too
        (sweep,) = r["latency"]["thread_sweep"]
        assert sweep["threads"] == 1 and sweep["load"]["cores"] == os.cpu_count()
        assert sweep["load"]["before"]["time"] >= r["latency"]["load"]["after"]["time"]


def _busy(report: dict, name: str) -> dict:
    rep = copy.deepcopy(report)
    row = next(r for r in rep["artifacts"] if r["artifact"] == name)
    row["latency"]["load"] = {**row["latency"]["load"], "busy": True, "cores": 2,
                              "before": {**row["latency"]["load"]["before"], "loadavg": [260.0, 200.0, 100.0]}}
    for r in rep["artifacts"]:
        if r is not row and (r.get("latency") or {}).get("load"):
            r["latency"]["load"]["busy"] = False
    return rep


def test_busy_rows_are_flagged_in_every_renderer(run, tmp_path):
    from rich.console import Console

    from edgepipe.reports.terminal import print_summary
    from edgepipe.sweeps.leaderboard import leaderboard_table

    rep = _busy(run["report"], "tflite-arm/int8")
    note = "latency measured on a busy machine: load average 260.0 on 2 cores"
    console = Console(record=True, width=400)
    print_summary(rep, console, run["out"])
    text = console.export_text()
    assert note in text and "busy machine:" in text
    assert sum("busy" in line for line in text.splitlines() if line.startswith("│")) == 1  # one row flagged

    page = html.render(rep)
    assert page.count('<span class="busy">busy</span>') == 2  # summary p50 and latency details
    assert note in page and 'id="busy-banner"' in page and "tflite-arm/int8 (busy machine)" in page

    row = next(r for r in rep["artifacts"] if r["artifact"] == "tflite-arm/int8")
    sweep = {"executor": "local", "targets": {}, "references": [],
             "rows": [dict(row, id="m/default/tflite-arm/int8", model="m", recipe="default")]}
    board = Console(record=True, width=400)
    board.print(leaderboard_table(sweep))
    text = board.export_text()
    assert f"{fmt(row['latency']['p50_ms'], '.1f')} busy" in text and note in text

    card = read_front_matter(Path(row["dir"]) / "README.md")
    card["environment"]["load"] = {**(card["environment"]["load"] or {}), "busy": True, "loadavg_before": 260.0,
                                   "loadavg_after": 250.0, "cores": 2, "steal_pct": 0.0, "measured_at": "t"}
    body = model_card.render(card, run["report"]["preprocess"])
    assert "**Latency measured on a busy machine** (load average 260.00 → 250.00 on 2 cores" in body
    for name in ("tflite-arm/int8", "openvino-cpu/int8"):  # the real cards say what the real rows say
        r = run["rows"][name]
        real = read_front_matter(Path(r["dir"]) / "README.md")
        assert real["environment"]["load"]["busy"] == r["latency"]["load"]["busy"]
        assert any("busy machine" in x for x in real["limits"]) == r["latency"]["load"]["busy"]


# ---- report.html ----------------------------------------------------------------------------------
PROBE = """<script>
const box = el => { const r = el.getBoundingClientRect();
  return {left: r.left, right: r.right, top: r.top + scrollY, bottom: r.bottom + scrollY, width: r.width}; };
const out = {viewport: document.documentElement.clientWidth,
  reasons: [...document.querySelectorAll('#summary td.reason li')].map(e => ({text: e.textContent, ...box(e)})),
  charts: [...document.querySelectorAll('svg[aria-label]')]
    .map(e => ({label: e.getAttribute('aria-label'), ...box(e)})),
  summary: box(document.querySelector('#summary'))};
const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script></body>"""


def test_terminal_summary_keeps_every_name_and_number_whole_at_80_columns(run):
    """rich squeezes a 10-column table into 80 columns by cutting every cell to a few characters; a terminal
    that narrow gets one block per artifact instead, and a wide one the table."""
    from rich.console import Console

    from edgepipe.reports.terminal import print_summary

    rep = run["report"]
    for width, table in ((80, False), (200, True)):
        console = Console(record=True, width=width)
        print_summary(rep, console, run["out"])
        text = console.export_text()
        assert ("┃ artifact" in text) is table and "…" not in text
        for r in rep["artifacts"]:
            assert r["artifact"] in text
            top1 = (r.get("accuracy") or {}).get("top1")
            if top1 is not None:
                assert fmt(top1, ".4f") in text
            p50 = (r.get("latency") or {}).get("p50_ms")
            if p50 is not None:
                assert fmt(p50, ".1f") in text


def test_report_html_shows_reasons_and_new_charts_at_1280px(run, chromium, tmp_path):
    from PIL import Image

    page = (run["out"] / "report.html").read_text()
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE))
    dom = render(chromium, probe, tmp_path, "--dump-dom").stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    m = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    width = m["viewport"]
    assert 1200 <= width <= 1280
    assert m["summary"]["right"] <= width  # the whole summary fits: nothing to scroll to
    coral = run["rows"]["coral-edgetpu/int8"]
    shown = [r for r in m["reasons"] if r["text"] in coral["reasons"]]
    assert len(shown) == len(coral["reasons"]), m["reasons"]
    for r in shown:
        assert 0 <= r["left"] and r["right"] <= width and r["width"] > 100, r
    labels = {c["label"]: c for c in m["charts"]}
    wanted = ["accuracy vs latency", "latency distribution", "per-class accuracy: Δ vs the FP32 reference",
              "per-layer error tflite-arm/int8, openvino-cpu/int8"]
    for name in wanted:
        assert name in labels, sorted(labels)
        assert 0 <= labels[name]["left"] and labels[name]["right"] <= width and labels[name]["width"] > 300

    shot = tmp_path / "shot.png"
    render(chromium, probe, tmp_path, f"--screenshot={shot}")
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (2400, 1280)

    def inked(box) -> float:  # share of dark (text, marks) pixels in the element's box
        crop = img[int(box["top"]):int(box["bottom"]), int(box["left"]):int(box["right"])]
        return float((crop.min(axis=2) < 120).mean())

    for r in shown:
        assert inked(r) > 0.02, r
    for name in wanted:
        if labels[name]["bottom"] <= 2400:
            assert inked(labels[name]) > 0.005, name

    # what the charts and tables say
    assert "top-3" not in page and "Top-k is not shown" in page  # k = 3 classes: always 1
    for name in NAMES[1:4]:
        assert f'class="point-label">{name}' in page  # every point named, not only coloured
    assert page.count('id="per-class-delta"') == 1
    ref_cm = run["rows"]["keras/fp32 (reference)"]["accuracy"]["confusion"]
    same = [n for n in NAMES[1:] if run["rows"][n]["accuracy"]["confusion"] == ref_cm]
    if same:  # named once, not drawn again
        assert f"Same confusion matrix as the reference: {', '.join(same)}." in page
    assert page.count("− reference") == len({json.dumps(run["rows"][n]["accuracy"]["confusion"])
                                             for n in NAMES[1:] if n not in same})
    assert page.count("(counts)") == 1  # the reference's matrix, only once


def test_html_escapes_user_strings(run):
    rep = copy.deepcopy(run["report"])
    rep["labels"] = ["<b>bold</b>", "a&b", "c"]
    rep["artifacts"][1]["reasons"] = ["<script>alert(1)</script>"]
    page = html.render(rep)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page


# ---- model cards ----------------------------------------------------------------------------------
def test_model_cards_parse_as_hugging_face_cards_with_the_new_fields(run):
    from ai_edge_litert.interpreter import Interpreter
    from huggingface_hub import ModelCard

    for name in NAMES[1:]:
        row = run["rows"][name]
        card = ModelCard.load(Path(row["dir"]) / "README.md")
        data = card.data.to_dict()
        assert data["license"] == "other" and {"edgepipe", row["format"], row["precision"]} <= set(data["tags"])
        results = {e.metric_type: e for e in card.data.eval_results}
        assert results["accuracy"].metric_value == pytest.approx(row["accuracy"]["top1"], abs=1e-4)
        assert results["accuracy"].task_type == "image-classification" and results["accuracy"].dataset_split == "test"
        assert "top-3-accuracy" not in results  # k = classes
        if "p50_ms" in row["latency"]:
            assert results["latency-p50-ms"].metric_value == pytest.approx(row["latency"]["p50_ms"], abs=1e-3)
        front = read_front_matter(Path(row["dir"]) / "README.md")
        assert data["model"] == front["model"] and data["model"]["name"] == name
        q, rt = front["quantization"], front["runtime"]
        if row["precision"] == "int8":
            assert q["recipe"]["name"] == "default" and q["recipe"]["weights"] == row["recipe"]["weights"]
        else:
            assert q["recipe"] is None and "Not quantized" in card.text
        if row["format"] == "tflite":
            assert rt["min_version"] == row["target_info"]["min_runtime"]["required"]
            interp = Interpreter(model_path=str(Path(row["dir"]) / front["model"]["file"]))
            scale, zero = interp.get_input_details()[0]["quantization"]
            if row["precision"] == "int8":  # the int8 input's parameters, from the file, as the runtime reads them
                assert q["input"]["dtype"] == "int8"
                assert (q["input"]["scale"], q["input"]["zero_point"]) == (pytest.approx(scale), zero)
                assert "zero point" in card.text and "scale" in card.text
        else:
            assert rt["name"] == "OpenVINO" and rt["min_version"] == run["report"]["environment"]["tools"]["openvino"]
            assert q["input"]["dtype"] == "f32"
        assert "## How to run" in card.text and "## Limits" in card.text


def _snippet(readme: Path) -> str:
    return re.search(r"```python\n(.*?)```", readme.read_text(), re.S).group(1)


@pytest.mark.parametrize("name", ["tflite-arm/int8", "openvino-cpu/int8", "onnx-cpu/int8"])
def test_the_how_to_run_program_runs_and_agrees_with_edgepipe(run, tiny_full_run, tiny_assets, tmp_path, name):
    from edgepipe.calibration.preprocess import PreprocessSpec
    from edgepipe.formats.runners import open_runner

    rows = {r["artifact"]: r for r in tiny_full_run["report"]["artifacts"]}  # this view's run has no onnx-cpu
    row = run["rows"].get(name) or rows[name]
    work = tmp_path / "artifact"
    shutil.copytree(row["dir"], work)
    image = sorted((Path(tiny_assets["data"]) / "vertical").iterdir())[0]
    shutil.copy(image, work / "image.jpg")
    res = subprocess.run([sys.executable, "-c", _snippet(work / "README.md")], cwd=work, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert res.returncode == 0, res.stderr[-2000:]
    label, score = res.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    spec = PreprocessSpec(**json.loads((work / "preprocess.json").read_text()))
    front = read_front_matter(work / "README.md")
    model = work / front["model"]["file"]
    if row["format"] == "onnx":  # the card records the session config the timed runner used on this CPU
        from edgepipe.formats.onnx import exact_int8_config

        assert front["environment"]["session_config"] == exact_int8_config()
    y = open_runner(row["format"], model, 1).predict(spec.load(work / "image.jpg"))
    labels = (work / "labels.txt").read_text().splitlines()
    assert label == labels[int(np.argmax(y))] and float(score) == pytest.approx(float(np.max(y)), abs=1e-4)


# ---- MLflow ---------------------------------------------------------------------------------------
def test_mlflow_run_holds_config_metrics_and_artifacts(run, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    assert "mlflow: run " in run["output"]
    client = MlflowClient(tracking_uri=run["store"].resolve().as_uri())
    exp = client.get_experiment_by_name("edgepipe")
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.info.status == "FINISHED" and mrun.info.run_name == "tiny_xception"
    params, metrics, tags = mrun.data.params, mrun.data.metrics, mrun.data.tags
    assert params["targets.0.name"] == "tflite-arm" and params["targets.2.name"] == "coral-edgetpu"
    assert params["latency.runs"] == "50" and params["gates.max_top1_drop"] == "10.0"
    rows = run["rows"]
    for name, key in (("tflite-arm/int8", "tflite-arm/int8"), ("keras/fp32 (reference)", "keras/fp32_reference")):
        assert metrics[f"{key}/top1"] == pytest.approx(rows[name]["accuracy"]["top1"])
        assert metrics[f"{key}/p50_ms"] == pytest.approx(rows[name]["latency"]["p50_ms"])
        assert metrics[f"{key}/busy"] == float(rows[name]["latency"]["load"]["busy"])
    assert metrics["exit_code"] == run["report"]["exit_code"]
    assert tags["status.coral-edgetpu/int8"] == "partial" and tags["status.tflite-arm/int8"] == "passed"
    rid = mrun.info.run_id

    def files(path=None):
        return {a.path: a.file_size for a in client.list_artifacts(rid, path)}

    top = files()
    assert top["report.json"] == (run["out"] / "report.json").stat().st_size
    assert top["report.html"] == (run["out"] / "report.html").stat().st_size
    assert set(files("config")) == {"config/config.json", "config/p.yaml"}
    cards = files("model_cards")
    assert set(cards) == {f"model_cards/{Path(rows[n]['dir']).name}" for n in NAMES[1:]}
    int8 = Path(rows["tflite-arm/int8"]["dir"])
    assert files(f"artifacts/{int8.name}")[f"artifacts/{int8.name}/model_int8.tflite"] == \
        (int8 / "model_int8.tflite").stat().st_size


def test_mlflow_missing_package_fails_before_the_run_naming_the_extra(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    cfg = dict(run["cfg"], output=str(tmp_path / "out"))
    res = runner.invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg)), "--mlflow"])
    assert res.exit_code == 2, res.output
    assert "pip install 'edgepipe[mlflow]'" in res.output and "--mlflow" in res.output
    assert not (tmp_path / "out" / "report.json").exists()  # nothing ran


