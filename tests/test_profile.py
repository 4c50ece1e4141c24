"""The time profile: nested spans count once, every stage name the house makes maps to a kind."""

from __future__ import annotations

import time

from edgepipe.core.cache import StageCache
from edgepipe.core.timing import Clock, Cost
from edgepipe.reports.profile import kind_of, lines, profile


def _busy(seconds: float) -> None:  # os.times() ticks in 10 ms steps: the asserts allow one tick
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_nested_spans_count_their_time_once():
    clock = Clock()
    with clock.span() as outer:
        _busy(0.05)
        with clock.span() as inner:
            _busy(0.1)
    o, i = outer.cost, inner.cost
    assert i.self_wall == i.wall and i.cpu >= 0.08
    assert o.wall >= i.wall + 0.04 and abs(o.self_wall - (o.wall - i.wall)) < 1e-9
    assert abs(o.self_cpu - (o.cpu - i.cpu)) < 1e-9 and o.self_cpu >= 0.03


def test_stage_cost_is_recorded_and_read_back_when_cached(tmp_path):
    cache = StageCache(tmp_path)

    def inner(out):
        _busy(0.05)
        return {}

    def outer(out):
        with cache.span("validation images"):
            _busy(0.05)
        cache.run("tflite-fp32", {"x": 1}, inner)
        _busy(0.05)
        return {}

    ran = cache.run("accuracy-tflite-arm-fp32", {"x": 2}, outer)
    # the load and the nested stage (0.05 s each) are not the stage's own: cpu - self_cpu is ~0.10 s, ~0.05 s if
    # only one of them were subtracted; os.times() ticks in 10 ms steps, so each reading may be a tick off
    assert ran.cost.cpu >= 0.13 and ran.cost.cpu - ran.cost.self_cpu >= 0.075
    prof = profile(cache.events, cache.spans, ran.cost.wall, ran.cost.cpu)
    k = prof["by_kind"]
    assert (k["convert"]["ran"], k["accuracy"]["ran"], k["load"]["ran"]) == (1, 1, 1)
    own = sum(v["cpu_seconds"] for v in k.values())
    assert abs(own - ran.cost.cpu) < 0.02 and prof["outside_stages"]["cpu_seconds"] < 0.02
    again = StageCache(tmp_path).run("accuracy-tflite-arm-fp32", {"x": 2}, outer)
    assert again.cached and again.cost == Cost.from_json(ran.cost.to_json())
    warm = profile([again], [], 0.01, 0.01)["by_kind"]["accuracy"]
    assert warm["ran"] == 0 and warm["cached"] == 1 and warm["cached_cost_cpu_seconds"] > 0
    assert any(line.startswith("accuracy") for line in lines(prof))


def test_every_stage_name_has_a_kind():
    names = {"accuracy-reference": "reference", "latency-reference": "reference", "savedmodel": "convert",
             "savedmodel-equalized": "quantize", "tflite-fp32": "convert", "ov-ir-fp32": "convert",
             "ov-ir-fp16-myriad": "convert", "onnx-fp32": "convert", "ov-cpu-blob-int8": "compile",
             "ov-npu-blob": "compile", "edgetpu-compile": "compile", "tflite-int8": "quantize",
             "tflite-int8-budget": "quantize", "nncf-int8": "quantize", "nncf-int8-npu": "quantize",
             "nncf-int8-budget": "quantize", "onnx-qdq-int8": "quantize", "control-reference": "quantize",
             "control-top1": "quantize", "probe-tflite-arm-int8": "probe", "accuracy-onnx-cpu-int8": "accuracy",
             "latency-openvino-cpu-int8": "latency", "layers-tflite-arm-int8": "diagnose",
             "arm64-emulated-int8": "emulate", "arm64-rootfs": "emulate", "bench-nncf-by-hand": "benchmark"}
    assert {n: kind_of(n) for n in names} == names
    assert kind_of("something-new") == "other"
