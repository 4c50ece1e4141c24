"""The roofline arithmetic: MACs counted in an OpenVINO model, the peak read off the ISA flags, the share."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.validators import roofline


def small_model():
    """input 1x3x8x8 -> conv 3x3 (3->4, pad 1) -> depthwise 3x3 (4 groups) -> reshape -> matmul (256 -> 5)."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 3, 8, 8], np.float32, name="x")
    conv = ops.convolution(x, ops.constant(np.ones((4, 3, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1], [1, 1])
    dw = ops.group_convolution(conv, ops.constant(np.ones((4, 1, 1, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1],
                               [1, 1])
    flat = ops.reshape(dw, ops.constant(np.array([1, 256], np.int64)), False)
    fc = ops.matmul(flat, ops.constant(np.ones((5, 256), np.float32)), False, True)
    return ov.Model([fc], [x])


def test_macs_are_counted_per_op_kind():
    conv = 4 * 8 * 8 * 3 * 3 * 3  # out elements x Cin x kh x kw
    dw = 4 * 8 * 8 * 1 * 3 * 3  # out elements x Cin/G x kh x kw
    fc = 5 * 256
    assert roofline.macs_per_image(small_model()) == conv + dw + fc


@pytest.mark.parametrize(("flags", "vendor", "int8", "fp32"), [
    ({"avx2", "fma", "avx512f", "avx512_vnni"}, "AuthenticAMD", 64, 16),
    ({"avx2", "fma", "avx512f", "avx512_vnni"}, "GenuineIntel", 128, 32),
    ({"avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"}, "GenuineIntel", 1024, 32),
    ({"avx2", "fma"}, "AuthenticAMD", 32, 16),
    ({"avx2", "fma", "avx512f", "avx512bw"}, "GenuineIntel", 64, 32),  # Skylake-SP: AVX-512 without VNNI
    ({"avx2", "fma", "avx512f", "avx512bw", "avx_vnni"}, "GenuineIntel", 64, 16),  # 256-bit VNNI comes first
])
def test_peak_follows_the_isa_flags(flags, vendor, int8, fp32):
    got = roofline.peak(flags, vendor, cores=2, ghz=3.7)
    assert (got["int8_macs_per_cycle"], got["fp32_macs_per_cycle"]) == (int8, fp32)
    assert got["int8_macs_per_s"] == pytest.approx(2 * 3.7e9 * int8)


def test_no_peak_for_an_isa_it_does_not_know():
    assert roofline.peak({"neon", "asimd"}, "", 4, 2.0) is None
    assert roofline.peak({"avx2"}, "GenuineIntel", 2, 3.0) is None  # AVX2 without FMA


def test_the_benchmarking_figure_and_the_share():
    peak = roofline.peak({"avx512_vnni"}, "AuthenticAMD", 2, 3.7)
    roof_ms = 1e3 * 8.36e9 / peak["int8_macs_per_s"]
    assert round(roof_ms, 1) == 17.7  # ../shared/BENCHMARKING.md rounds it: 474 GMAC/s, 17.6 ms
    assert roofline.share(2 * roof_ms, int(8.36e9), peak["int8_macs_per_s"]) == pytest.approx(0.5)


def test_clock_source(tmp_path):
    freq = tmp_path / "max"
    freq.write_text("3500000\n")  # kHz
    assert roofline.clock_ghz(None, str(freq)) == (3.5, "cpufreq maximum")
    assert roofline.clock_ghz(2.9, str(freq)) == (2.9, "given")
    assert roofline.clock_ghz(None, str(tmp_path / "none"))[0] == roofline.DEFAULT_CLOCK_GHZ


def test_cpu_flags_reads_the_first_cpu(tmp_path):
    from edgepipe.core.versions import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512_vnni\n\n"
                    "processor\t: 1\nvendor_id\t: Other\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == ({"fpu", "avx2", "avx512_vnni"}, "AuthenticAMD")
    assert cpu_flags(str(tmp_path / "none")) == (set(), "")


def test_the_compile_record_names_vnni_for_int8_avx512_kernels_on_a_vnni_cpu():
    """oneDNN's AVX-512 int8 kernel names no longer say VNNI; on a CPU with avx512_vnni they use it."""
    from edgepipe.targets.openvino_compile import isa_labels

    kernels = {"Convolution:brgconv_avx512_1x1_I8": 38, "Convolution:brgconv_avx512_f32": 1}
    assert isa_labels(kernels, {"avx512f", "avx512_vnni"}) == ["AVX-512", "AVX-512 VNNI"]
    assert isa_labels(kernels, {"avx512f"}) == ["AVX-512"]
    assert isa_labels({"Convolution:brgconv_avx512_amx_I8": 3}, {"avx512_vnni", "amx_int8"}) == ["AMX", "AVX-512"]
    assert isa_labels({"Convolution:jit_avx2_I8": 3}, {"avx2"}) == ["AVX2"]


def test_count_macs_reads_a_model_file_and_says_why_it_cannot(tmp_path):
    import openvino as ov

    ov.save_model(small_model(), tmp_path / "m.xml")
    assert roofline.count_macs(tmp_path / "m.xml") == (roofline.macs_per_image(small_model()), None)
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer")
    macs, why = roofline.count_macs(tmp_path / "bad.tflite")
    assert macs is None and why.startswith("MACs not counted: ")


def test_the_record_holds_int8_against_the_int8_peak_and_float_against_fp32(monkeypatch):
    monkeypatch.setattr(roofline, "cpu_flags", lambda: ({"avx2", "fma", "avx512_vnni"}, "AuthenticAMD"))
    monkeypatch.setattr(roofline.os, "cpu_count", lambda: 2)
    roof_int8_ms = 1e3 * 8.36e9 / (2 * 3.7e9 * 64)
    int8 = roofline.record(2 * roof_int8_ms, int(8.36e9), "int8", threads=4, given_ghz=3.7)
    assert int8["share"] == pytest.approx(0.5) and int8["of_peak"] == "int8" and int8["cores"] == 2  # 2 of 4 threads
    assert int8["roof_ms"] == pytest.approx(roof_int8_ms, abs=1e-3) and int8["clock_source"] == "given"
    # one core at 16 FP32 MACs per cycle is 1/8 of two cores at 64 INT8: 16x the INT8 roof is half the FP32 peak
    fp32 = roofline.record(16 * roof_int8_ms, int(8.36e9), "fp32", threads=1, given_ghz=3.7)
    assert fp32["of_peak"] == "fp32" and fp32["cores"] == 1 and fp32["share"] == pytest.approx(0.5)
    assert roofline.record(10.0, 10**9, "int16", 2, 3.7) is None  # 16x8: no peak row for it
    monkeypatch.setattr(roofline, "cpu_flags", lambda: ({"neon"}, ""))
    assert roofline.record(10.0, 10**9, "int8", 2, 3.7) is None  # a CPU not in PEAKS


@pytest.mark.parametrize("cap, openvino_isa", [(None, "amx_int8"), ("AVX512_CORE_VNNI", "avx512_vnni"),
                                               ("avx512_core", "avx512bw"), ("AVX2", "avx2")])
def test_a_onednn_isa_cap_lowers_the_peak_of_openvino_rows_only(monkeypatch, cap, openvino_isa):
    """Under ONEDNN_MAX_CPU_ISA an OpenVINO IR's kernels cannot use the int8 instructions the cap takes away, but its
    share was held against the CPU's full peak (AMX under a cap to AVX-512 VNNI). LiteRT and ONNX Runtime do not run
    oneDNN's kernels: their peak stays the CPU's."""
    monkeypatch.setattr(roofline, "cpu_flags", lambda: ({"avx2", "fma", "avx512bw", "avx512_vnni", "amx_int8"},
                                                        "GenuineIntel"))
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    ir = roofline.record(10.0, 10**9, "int8", 2, 3.7, fmt="openvino-ir")
    assert ir["isa"] == openvino_isa
    for fmt in ("tflite", "onnx", None):
        assert roofline.record(10.0, 10**9, "int8", 2, 3.7, fmt=fmt)["isa"] == "amx_int8"


def test_a_reader_that_dies_after_the_timing_loses_only_the_mac_count(monkeypatch):
    """`edgepipe bench` counts a foreign file's MACs in the latency child after it printed the timing: a
    frontend that crashes or hangs on the file costs the count (a note says why), not the measurement."""
    from edgepipe.core.children import Outcome
    from edgepipe.core.errors import StageError
    from edgepipe.validators import latency_child

    def child(returncode, timed_out=False, macs_line=None):
        def fake(module, args, limits, threads, steps, on_line):
            on_line('result {"p50_ms": 1.5}')
            if macs_line:
                on_line(macs_line)
            return Outcome(returncode=returncode, stderr="Segmentation fault", seconds=1.0, timed_out=timed_out)
        return fake

    images = np.zeros((2, 4, 4, 3), np.float32)
    monkeypatch.setattr(latency_child, "run_limited", child(-11))
    res = latency_child.measure_in_child("openvino", "m.xml", 1, images, 0, 1, count_macs=True)
    assert res == {"p50_ms": 1.5, "macs_note": "MACs not counted: the child stopped while reading the file (exit -11)"}
    with pytest.raises(StageError, match="child exit -11"):  # without the count, the crash is the measurement's
        latency_child.measure_in_child("openvino", "m.xml", 1, images, 0, 1)
    monkeypatch.setattr(latency_child, "run_limited", child(-9, timed_out=True))
    res = latency_child.measure_in_child("openvino", "m.xml", 1, images, 0, 1, count_macs=True)
    assert res["macs_note"].endswith("(it ran out of time)")
    monkeypatch.setattr(latency_child, "run_limited", child(0, macs_line='macs {"macs_per_image": 42}'))
    assert latency_child.measure_in_child("openvino", "m.xml", 1, images, 0, 1, count_macs=True) == {
        "p50_ms": 1.5, "macs_per_image": 42}


def _compute_floor():
    """benchmarks/compute_floor.py, a script beside the benchmarks (not an installed module)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "compute_floor.py"
    spec = importlib.util.spec_from_file_location("compute_floor", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _floor_report(stat_seconds: float) -> dict:
    """A cold run's report.json, reduced to what the floor reads: 10 validation and 4 calibration images, 1e8
    MACs per image, peaks of 1e9 (FP32) and 4e9 (INT8) MACs per second."""
    def roof(kind, rate):
        return {"of_peak": kind, "peak_macs_per_s": rate, "macs_per_image": 10**8, "isa": "avx2", "clock_ghz": 1.0,
                "cores": 2}

    lat = {"runs": 50, "warmup": 5}
    artifacts = [
        {"artifact": "keras/fp32 (reference)", "precision": "fp32", "latency": lat},
        {"artifact": "tflite-arm/fp32", "precision": "fp32",
         "latency": {**lat, "roofline": roof("fp32", 1e9), "end_to_end": {"runs": 45}}},
        {"artifact": "tflite-arm/int8", "precision": "int8", "latency": {**lat, "roofline": roof("int8", 4e9)}},
        {"artifact": "openvino-npu/int8", "precision": "int8"},  # scored on the CPU, not timed
    ]
    names = ["accuracy-reference", "latency-reference", "tflite-fp32", "accuracy-tflite-arm-fp32",
             "latency-tflite-arm-fp32", "tflite-int8", "accuracy-tflite-arm-int8", "latency-tflite-arm-int8",
             "nncf-int8-npu", "accuracy-openvino-npu-int8"]
    walls = {"tflite-int8": 3.0, "nncf-int8-npu": stat_seconds}
    return {"artifacts": artifacts,
            "data": {"validation": {"count": 10}, "calibration": {"count": 30}, "quantization_calibration_size": 4},
            "stages": [{"stage": n, "cached": False} for n in names],
            "profile": {"by_kind": {"reference": {"wall_seconds": 13.0}, "accuracy": {"wall_seconds": 4.0},
                                    "convert": {"wall_seconds": 1.0}},
                        "stages": [{"stage": n, "cached": False, "self_wall_seconds": walls.get(n, 1.0)}
                                   for n in names]}}


def test_the_compute_floor_counts_every_pass_at_its_precisions_peak():
    cf = _compute_floor()
    got = cf.floor(_floor_report(stat_seconds=0.0))["seconds"]
    # reference: 10 images + 55 timed runs in FP32; accuracy: 10 images each of FP32, INT8, and the untimed NPU
    # IR (INT8, the FP32 model's MAC count); latency: 55 runs each, and 45 end-to-end runs more for FP32;
    # quantize: one FP32 pass over the 4 calibration images for tflite-int8, none for an NNCF NPU stage that
    # reused the CPU's statistics (0 s)
    assert got == pytest.approx({"reference": 6.5, "accuracy": 1.0 + 0.25 + 0.25, "latency": 10.0 + 1.375,
                                 "quantize": 0.4})
    assert cf.floor(_floor_report(stat_seconds=9.0))["seconds"]["quantize"] == pytest.approx(0.8)
    text = cf.lines(_floor_report(0.0), goal_seconds=30.0)
    rows = {line.split()[0]: line.split()[1:] for line in text[2:6]}
    assert rows["reference"] == ["6.5", "13.0", "0.50"] and rows["latency"] == ["11.4", "0.0", "—"]
    assert text[6].split() == ["counted", "19.8", "17.0", "1.16"]
    assert text[7] == "  not counted: 1.0 s wall in stages of kind convert"
    assert "a cold run of 30 s would leave 10 s" in text[8]


def test_the_compute_floor_needs_a_roofline_record():
    cf = _compute_floor()
    report = _floor_report(0.0)
    for row in report["artifacts"]:
        (row.get("latency") or {}).pop("roofline", None)
    assert cf.floor(report) is None
    assert cf.lines(report)[0].startswith("compute floor: no roofline record")


def test_the_example_build_is_held_against_its_features_floor():
    cf = _compute_floor()
    markers = {"elpv-features": {"meta": {"train_images": 30}, "cost": {"self_wall_seconds": 6.0}},
               "elpv-xception": {"meta": {}, "cost": {"self_wall_seconds": 1.5}}}
    text = cf.build_lines(_floor_report(0.0), markers, goal_seconds=10.0)
    # 30 images x 1e8 MACs at the FP32 peak of 1e9 MACs per second: 3 s, half the features' 6 s
    assert text[0].startswith("example build: 7.5 s wall (features of 30 train images 6.0 s")
    assert "floor at the FP32 peak: 3.0 s (0.50 of their wall)" in text[1] and "would leave 7 s" in text[1]
    assert cf.build_lines(_floor_report(0.0), {"elpv-xception": markers["elpv-xception"]})[0].startswith(
        "example build: no cost recorded")
