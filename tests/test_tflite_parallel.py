"""TFLite's calibration split over processes (pipeline/quantize/quantizers/tflite_parallel.py): the INT8 model it
builds is byte-identical to the one-process conversion, and a child that fails says so."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.calibration.adapters import tflite_representative
from edgepipe.quantize.quantizers import tflite_parallel as tp
from tests.fixtures.configs import tiny_split
from tests.fixtures.tiny_runs import stage_output

pytestmark = pytest.mark.heavy(seconds=12)  # worker-seconds measured: longest first (tests/fixtures/scheduling.py)


def test_parts_are_contiguous_and_never_too_small():
    assert tp.parts(300, 2) == [(0, 150), (150, 300)]
    assert tp.parts(300, 1) == [(0, 300)]
    assert tp.parts(30, 2) == [(0, 30)]  # 15 images a part: a child's start would cost more than it saves
    spans = tp.parts(100, 8)
    assert len(spans) == 100 // tp.MIN_IMAGES_PER_PART and spans[0][0] == 0 and spans[-1][1] == 100
    previous_ends = [0] + [b for _, b in spans[:-1]]
    assert all(b - a >= tp.MIN_IMAGES_PER_PART and a == end for (a, b), end in zip(spans, previous_ends, strict=True))


@pytest.fixture(scope="module")
def tiny_savedmodel(tiny_full_run):
    """The tiny model's SavedModel, as the session cold run's stage exported it (read only)."""
    return stage_output(tiny_full_run, "savedmodel", "saved_model")


def test_the_split_calibration_builds_the_same_bytes(tiny_assets, tiny_full_run, tiny_savedmodel, tmp_path,
                                                     monkeypatch):
    """Against the one-process conversion of the same SavedModel and 30 images: the cold run's INT8 stage."""
    from edgepipe.quantize.quantizers.tflite import convert_int8

    calib = tiny_split(tiny_assets, "calibration").images  # 30 images
    (tmp_path / "two").mkdir()
    one = stage_output(tiny_full_run, "tflite-int8", "model_int8.tflite").read_bytes()
    monkeypatch.setattr(tp, "MIN_IMAGES_PER_PART", 4)
    started = []
    real_popen = tp.subprocess.Popen
    monkeypatch.setattr(tp.subprocess, "Popen", lambda *a, **k: started.append(a) or real_popen(*a, **k))
    two = convert_int8(tiny_savedmodel, tmp_path / "two", calib, processes=2).read_bytes()
    assert len(started) == 1  # one child calibrated half of the images
    assert two == one


def test_merged_ranges_are_the_extremes_of_the_parts(tiny_assets, tiny_savedmodel, monkeypatch):
    """Each part alone records narrower ranges than the whole; the merge restores the whole's."""
    from tensorflow.lite.python.optimize import calibrator
    from tensorflow.lite.tools import flatbuffer_utils

    from edgepipe.quantize.quantizers.tflite import converter

    calib = tiny_split(tiny_assets, "calibration").images
    seen, original = {}, calibrator.Calibrator.calibrate

    def spy(self, dataset_gen):  # the float model the converter calibrates, and its calibration on all images
        seen["float"] = self._model_content
        seen["whole"] = original(self, dataset_gen)
        return seen["whole"]

    monkeypatch.setattr(calibrator.Calibrator, "calibrate", spy)
    conv = converter(tiny_savedmodel)
    conv.representative_dataset = tflite_representative(calib)
    conv.convert()
    monkeypatch.undo()
    halves = [calibrator.Calibrator(seen["float"]).calibrate(tflite_representative(calib[a:b]))
              for a, b in [(0, 15), (15, 30)]]

    def ranges(model: bytes) -> dict:
        obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
        return {t.name: (np.asarray(t.quantization.min), np.asarray(t.quantization.max))
                for t in obj.subgraphs[0].tensors if t.quantization is not None and t.quantization.min is not None}

    want, merged, first = ranges(seen["whole"]), ranges(tp.merge_ranges(halves)), ranges(halves[0])
    assert want.keys() == merged.keys() and len(want) > 20
    for name, (lo, hi) in want.items():
        np.testing.assert_array_equal(merged[name][0], lo)
        np.testing.assert_array_equal(merged[name][1], hi)
    assert any((first[n][0] > want[n][0]).any() or (first[n][1] < want[n][1]).any() for n in want)


def test_a_child_that_fails_stops_the_conversion_with_its_reason(tiny_assets, tiny_savedmodel, tmp_path,
                                                                 monkeypatch):
    from edgepipe.quantize.quantizers.tflite import convert_int8

    calib = tiny_split(tiny_assets, "calibration").images
    monkeypatch.setattr(tp, "MIN_IMAGES_PER_PART", 4)
    monkeypatch.setattr(tp.sys, "executable", "false")  # a "python" that exits 1 at once
    with pytest.raises(RuntimeError, match=r"TFLite calibration of images 15\.\.30 in a child process failed "
                                           r"\(exit 1\)"):
        convert_int8(tiny_savedmodel, tmp_path, calib, processes=2)
    assert not (tmp_path / "model_int8.tflite").exists()
