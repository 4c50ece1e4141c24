"""The report renderers' parts, without a run: the machine-load record from /proc/stat snapshots, the charts'
axes, order and statistics, Markdown escaping, and the model card's OpenVINO program. The same renderers on a real
run: tests/test_report_views.py."""

from __future__ import annotations

import re

import pytest

from edgepipe.reports import charts, charts_dist, html, model_card
from edgepipe.validators import machine_load
from edgepipe.validators.stats import wilson_ci


def test_load_record_from_hand_made_snapshots(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3 4\n")
    assert machine_load.cpu_ticks(str(stat)) == {"total": 1000, "steal": 40}
    assert machine_load.cpu_ticks(str(tmp_path / "missing")) is None
    before = {"time": "t0", "loadavg": [1.0, 1.0, 1.0], "cpu_ticks": {"total": 1000, "steal": 40}}
    after = {"time": "t1", "loadavg": [2.5, 1.2, 1.0], "cpu_ticks": {"total": 1200, "steal": 90}}
    rec = machine_load.record(before, after, cores=2)
    assert rec["steal_pct"] == 25.0 and rec["busy"] is True  # 50 of 200 ticks stolen; 2.5 > 2 cores
    assert machine_load.record(before, before | {"loadavg": [2.0, 0, 0]}, cores=2)["busy"] is False
    assert machine_load.record({"loadavg": None, "cpu_ticks": None}, {"loadavg": None, "cpu_ticks": None},
                               cores=2) == {"before": {"loadavg": None, "cpu_ticks": None},
                                            "after": {"loadavg": None, "cpu_ticks": None},
                                            "cores": 2, "steal_pct": None, "busy": False}


def test_scatter_accuracy_axis_spans_at_least_five_points_and_shows_both_cis():
    pts = [{"label": "a", "x": 10.0, "y": 0.755, "xerr": (9.0, 11.0), "yerr": (0.754, 0.756)},
           {"label": "b <i>", "x": 20.0, "y": 0.759, "xerr": (19.0, 21.0), "yerr": (0.758, 0.760)}]
    svg = charts.scatter(pts, "p50", "top-1", "t")
    ticks = [float(t) for t in re.findall(r'text-anchor="end" [^>]*>([0-9.]+)</text>', svg)]
    assert max(ticks) - min(ticks) >= 0.05, ticks
    assert svg.count('stroke-width="1.5"/>') >= 4 * 3  # two CI bars per point, each with two caps
    assert "b &lt;i&gt;" in svg and "<i>" not in svg


def test_per_layer_order_merges_toolchains_in_network_order():
    tfl = [{"layer": n, "position": p, "snr_db": 30.0} for n, p in (("conv1", 1), ("sep3", 5), ("exit", 9))]
    ov = [{"layer": n, "position": p, "snr_db": 20.0} for n, p in (("sep2", 12), ("sep3", 14), ("sep4", 15),
                                                                      ("sep4", 16), ("exit", 30))]
    assert charts_dist.depth_order([("tflite", tfl), ("openvino", ov)]) == ["conv1", "sep2", "sep3", "sep4", "exit"]
    svg = charts_dist.layer_dots([("tflite", tfl), ("openvino", ov)], "snr_db", "SNR", "per-layer")
    assert svg.index(">conv1<") < svg.index(">sep2<") < svg.index(">exit<")


def test_box_stats_and_topk_and_wilson():
    s = charts_dist.box_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s["q1"], s["median"], s["q3"], s["lo"], s["hi"], s["outliers"]) == (2.0, 3.0, 4.0, 1.0, 4.0, [100.0])
    assert html.topk_label([html.ReportRow(artifact="a", accuracy={"top5_k": 3})], 3) is None
    assert html.topk_label([html.ReportRow(artifact="a", accuracy={"top5_k": 5})], 10) == "top-5"
    lo, hi = wilson_ci(590, 786)
    assert lo < 590 / 786 < hi and hi - lo == pytest.approx(0.0604, abs=0.001)
    assert wilson_ci(0, 10)[0] == 0.0 and wilson_ci(10, 10)[1] == 1.0


def test_markdown_escaping_of_user_strings():
    assert model_card.md("a|b *c* <i>") == "a\\|b \\*c\\* &lt;i&gt;"
    assert model_card.md("two\nlines") == "two lines" and model_card.md(None) == "—"
    assert model_card.code("a`b") == "``a`b``" and model_card.code("x") == "`x`"
    assert model_card.md(model_card.Raw("`kept`")) == "`kept`"


def test_the_openvino_cpu_program_pins_the_precision_edgepipe_validated():
    """The CPU plugin runs the float parts in bf16 by default on CPUs with bf16 (AVX-512 BF16, AMX): the model
    card's program asks for f32, as edgepipe's runner does, or its scores differ from the validated ones
    (the program test above fails on such a CPU without it). The NPU compiles for its own device."""
    from edgepipe.reports.run_snippets import snippet

    spec = {"width": 8, "height": 8, "channels": 3, "mode": "xception"}
    cpu = snippet("openvino-ir", "openvino-cpu", "model.xml", spec, None)["code"]
    npu = snippet("openvino-ir", "openvino-npu", "model.xml", spec, None)["code"]
    assert "compile_model(MODEL, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})" in cpu
    assert "compile_model(MODEL, 'NPU')" in npu and "INFERENCE_PRECISION_HINT" not in npu


def test_the_onnx_int8_program_keeps_int8_products_exact_where_edgepipe_does():
    """On x86 without VNNI ONNX Runtime's u8 x s8 kernels saturate; edgepipe's runner then sets its exact-int8
    session option (formats/onnx.py exact_int8_config), and so does the INT8 model card's program. FP32: no option."""
    from edgepipe.reports.run_snippets import snippet

    spec = {"width": 8, "height": 8, "channels": 3, "mode": "xception"}
    # a QDQ model's input is float, like the FP32 model's: the card says which one is INT8
    int8 = snippet("onnx", "onnx-cpu", "model_int8.onnx", spec, {"dtype": "float32"}, int8=True)
    fp32 = snippet("onnx", "onnx-cpu", "model_fp32.onnx", spec, {"dtype": "float32"})
    assert "if 'avx2' in cpu and 'vnni' not in cpu:" in int8["code"]
    assert "opts.add_session_config_entry('session.x64quantprecision', '1')" in int8["code"]
    assert "x64quantprecision" not in fp32["code"]
    for program in (int8["code"], fp32["code"]):
        compile(program, "<card>", "exec")
        assert "ort.InferenceSession(MODEL, opts, providers=['CPUExecutionProvider'])" in program
