"""Artifacts for bench_fidelity.py: Keras-level sources (plain or transformed), the three quantizers,
each toolchain's defaults run by hand, and the fp16 / bf16 floors. Every build is a cached stage.

A *source* is a Keras model (the example's, or one produced from it by a chain of transforms from
pipeline/quantize/) exported to a SavedModel; each transform is its own stage keyed by its parent,
its parameters and the calibration images, so a chain shares its prefix with every other chain.
"""

from __future__ import annotations

import json
from pathlib import Path

import by_hand  # benchmarks/ is on sys.path (bench_fidelity.py puts it there)
import numpy as np

from edgepipe.core.hashing import sha256_file, stable_hash
from edgepipe.core.versions import tool_versions

RUNNERS = {"tflite": ".tflite", "openvino": ".xml", "onnx": ".onnx"}


def transforms() -> dict:
    """name -> fn(model, calib_images, params, control) -> (new model, info dict). Imported lazily."""
    def eq_sep(model, images, params, _control):
        from edgepipe.quantize.equalize import equalize

        new, rep = equalize(model, images, separable=True, cross_layer=False, alpha=params.get("alpha", 0.5))
        return new, {"separable_layers": len(rep.separable)}

    def reseq(model, images, params, _control):
        from edgepipe.quantize import residual_equalize

        return residual_equalize.equalize_residual_stream(model, images[: params.get("images", 64)],
                                                          max_scale=params.get("max_scale", 16.0))

    def biascorr(model, images, params, _control):
        from edgepipe.quantize import bias_correction

        return bias_correction.correct_weight_bias(model, images[: params.get("images", 64)])

    def gptq(model, images, params, _control):
        from edgepipe.quantize import learned_rounding

        return learned_rounding.learn_rounding(model, images[: params.get("images", 32)])

    def qat(model, images, params, _control):  # trains on the calibration images only
        from edgepipe.quantize import qat as qat_mod

        n = params.get("images", len(images))
        return qat_mod.fine_tune(model, images[:n], {k: v for k, v in params.items() if k != "images"})

    return {"eq-sep": eq_sep, "reseq": reseq, "biascorr": biascorr, "gptq": gptq, "qat": qat}


class Builder:
    """Builds (and caches) every artifact of the bench in `ctx`'s stage cache."""

    def __init__(self, ctx, calib, control):
        self.ctx = ctx
        self.calib = calib
        self.control = control

    # ---- sources ---------------------------------------------------------------------
    def source(self, chain: tuple) -> dict:
        """{"savedmodel": dir, "keras": path or None, "key": str} of a transform chain (() = the model)."""
        if not chain:
            sm = self.ctx.savedmodel()
            return {"savedmodel": sm.path / "saved_model", "keras": self.ctx.model_path, "key": sm.key}
        parent = self.source(chain[:-1])
        name, params = chain[-1]
        key = {"parent": parent["key"], "transform": name, "params": params, "calibration": self.calib.sha256,
               **tool_versions("tensorflow", "keras")}

        def fn(out: Path) -> dict:
            import keras

            from edgepipe.quantize.equalize import max_output_diff
            from edgepipe.stages.savedmodel import export_savedmodel

            model = keras.saving.load_model(parent["keras"], compile=False)
            new, info = transforms()[name](model, self.calib.images, params, self.control)
            info["max_output_diff_vs_parent"] = max_output_diff(model, new, self.calib.images[:16])
            new.save(out / "model.keras")
            export_savedmodel(new, out, self.ctx.spec.shape)
            (out / "transform.json").write_text(json.dumps(info, indent=1, default=float))
            return {k: v for k, v in info.items() if isinstance(v, int | float | str)}

        res = self.ctx.stage(f"fid-source-{name}", key, fn)
        return {"savedmodel": res.path / "saved_model", "keras": res.path / "model.keras", "key": res.key,
                "meta": res.meta}

    # ---- float conversions -----------------------------------------------------------
    def ir(self, chain: tuple) -> Path:
        from edgepipe.stages.openvino import convert_ir

        src = self.source(chain)
        res = self.ctx.stage("fid-ov-ir", {"source": src["key"], "shape": list(self.ctx.spec.shape),
                                           **tool_versions("openvino")},
                             lambda out: {"file": convert_ir(src["savedmodel"], out, self.ctx.spec.shape).name})
        return res.path / res.meta["file"]

    def onnx(self, chain: tuple) -> Path:
        from edgepipe.stages.onnx import convert_onnx

        src = self.source(chain)
        res = self.ctx.stage("fid-onnx-fp32", {"source": src["key"], **tool_versions("tensorflow", "tf2onnx", "onnx")},
                             lambda out: {"file": convert_onnx(src["savedmodel"], out).name})
        return res.path / res.meta["file"]

    def tflite_fp32(self, chain: tuple) -> Path:
        from edgepipe.stages.tflite import convert_fp32

        src = self.source(chain)
        res = self.ctx.stage("fid-tflite-fp32", {"source": src["key"], **tool_versions("tensorflow")},
                             lambda out: {"file": convert_fp32(src["savedmodel"], out).name})
        return res.path / res.meta["file"]

    # ---- edgepipe's quantizers (the same stage functions the targets use) -------------
    def quantized(self, tool: str, chain: tuple, recipe: dict, native: dict | None = None) -> Path:
        """The INT8 artifact of `tool` for a source chain and a recipe; `native`: toolchain options the
        Recipe schema does not have yet (nncf: overflow_fix; ort: reduce_range, activation_type,
        weight_type, extra_options), passed to the toolchain as they are."""
        from edgepipe.quantize.recipes import Recipe

        r = Recipe(**recipe)
        native = native or {}
        calib = self.calib.images
        if tool == "tflite":
            from edgepipe.quantize.quantizers.tflite import convert_int8

            src = self.source(chain)
            key = {"source": src["key"], "recipe": r.cache_params(), "calibration": self.calib.sha256,
                   **tool_versions("tensorflow")}

            def fn(out):
                return {"file": convert_int8(src["savedmodel"], out, calib, True, r).name}
        elif tool == "nncf":
            ir = self.ir(chain)
            key = {"ir": sha256_file(ir), "recipe": r.cache_params(), "calibration": self.calib.sha256,
                   **tool_versions("openvino", "nncf")}

            def fn(out):
                return {"file": _nncf(ir, out, calib, r, native).name}
        elif tool == "ort":
            src = self.onnx(chain)
            # "onnx_fp32", not "onnx": tool_versions' "onnx" key would replace it (every ORT row with the
            # same recipe then shared one artifact, whatever its source chain)
            key = {"onnx_fp32": sha256_file(src), "recipe": r.cache_params(), "calibration": self.calib.sha256,
                   **tool_versions("onnx", "onnxruntime")}

            def fn(out):
                return {"file": _ort(src, out, calib, r, native).name}
        else:
            raise ValueError(f"expected tool tflite, nncf or ort. Received: {tool!r}")
        if native:
            key["native"] = native
        res = self.ctx.stage(f"fid-{tool}-int8", key, fn)
        return res.path / res.meta["file"]

    # ---- the toolchains' defaults by hand, and the floors ----------------------------
    def by_hand(self, tool: str) -> Path:
        if tool == "tflite":
            src = self.source(())
            res = self.ctx.stage("bench-tflite-by-hand", {"savedmodel": src["key"], "calibration": self.calib.sha256,
                                                          **tool_versions("tensorflow")},
                                 lambda out: by_hand.tflite_by_hand(src["savedmodel"], out, self.calib.images))
            return res.path / "model.tflite"
        if tool == "nncf":
            src = self.source(())
            res = self.ctx.stage("bench-nncf-by-hand", {"savedmodel": src["key"], "calibration": self.calib.sha256,
                                                        "shape": list(self.ctx.spec.shape),
                                                        **tool_versions("openvino", "nncf")},
                                 lambda out: by_hand.nncf_by_hand(src["savedmodel"], out, self.calib.images,
                                                           self.ctx.spec.shape))
            return res.path / "model.xml"
        onnx = self.onnx(())
        res = self.ctx.stage("bench-ort-by-hand", {"onnx": sha256_file(onnx), "calibration": self.calib.sha256,
                                                   **tool_versions("onnxruntime")},
                             lambda out: by_hand.ort_by_hand(onnx, out, self.calib.images))
        return res.path / "model.onnx"

    def fp16(self) -> Path:
        src = self.source(())
        res = self.ctx.stage("fid-tflite-fp16", {"savedmodel": src["key"], **tool_versions("tensorflow")},
                             lambda out: _tflite_fp16(src["savedmodel"], out))
        return res.path / "model_fp16.tflite"


def runner_factory(path: Path, threads: int, precision: str = "f32"):
    from edgepipe.formats.runners import ONNXRunner, OpenVINORunner, TFLiteRunner

    if path.suffix == ".tflite":
        return lambda: TFLiteRunner(path, threads)
    if path.suffix == ".xml":
        return lambda: OpenVINORunner(path, threads, precision=precision)
    if path.suffix == ".onnx":
        return lambda: ONNXRunner(path, threads)
    raise ValueError(f"expected a .tflite, .xml or .onnx artifact. Received: {str(path)!r}")


def artifact_key(path: Path) -> str:
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    return stable_hash([sha256_file(f) for f in files])


def bf16_supported() -> dict:
    """Whether this CPU runs bf16 natively (what OpenVINO's CPU plugin needs for a bf16 hint)."""
    flags: set[str] = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    have = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16", "amx_fp16"})
    return {"flags": have, "supported": bool(have)}


def _tflite_fp16(saved_model: Path, out: Path) -> dict:
    """The fp16 floor: TFLite's float16 post-training quantization (fp16 weights; XNNPACK computes
    in fp32 on CPUs without native fp16 arithmetic, so this floors the weights' rounding only)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    (out / "model_fp16.tflite").write_bytes(conv.convert())
    return {}


def _nncf(ir: Path, out: Path, calib: np.ndarray, recipe, native: dict) -> Path:
    """edgepipe.quantize.quantizers.nncf.quantize_nncf plus NNCF advanced parameters the recipe has no field for."""
    if set(native) <= {"target_device"}:  # NNCF's hardware config only: the pipeline's own call
        from edgepipe.quantize.quantizers.nncf import quantize_nncf

        return quantize_nncf(ir, out, calib, recipe, target_device=native.get("target_device", "ANY"))
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    from edgepipe.calibration.adapters import nncf_dataset
    from edgepipe.quantize.quantizers.nncf import nncf_arguments
    from edgepipe.stages.openvino import canonical_names

    kw = nncf_arguments(recipe)
    adv = kw.pop("advanced_parameters", None) or AdvancedQuantizationParameters()
    if "overflow_fix" in native:
        adv.overflow_fix = OverflowFix(native["overflow_fix"])
    if "target_device" in native:
        kw["target_device"] = nncf.TargetDevice(native["target_device"])
    model = ov.Core().read_model(str(ir))
    names = frozenset(op.get_friendly_name() for op in model.get_ops())
    q = nncf.quantize(model, nncf_dataset(calib), subset_size=len(calib), advanced_parameters=adv, **kw)
    canonical_names(q, names, "nncf_")
    dest = Path(out) / "model_int8.xml"
    ov.save_model(q, str(dest), compress_to_fp16=False)
    return dest


def _ort(model: Path, out: Path, calib: np.ndarray, recipe, native: dict) -> Path:
    """edgepipe.quantize.quantizers.onnxruntime.quantize_qdq plus quantize_static arguments the recipe has no
    field for."""
    if not native:
        from edgepipe.quantize.quantizers.onnxruntime import quantize_qdq

        return quantize_qdq(model, out, calib, recipe)
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgepipe.calibration.adapters import onnx_calibration_reader
    from edgepipe.quantize.quantizers.onnxruntime import CALIBRATION_METHODS

    dest = Path(out) / "model_int8.onnx"
    n = len(calib)
    extra = {"CalibStridedMinMax": max(d for d in range(1, min(16, n) + 1) if n % d == 0),
             **native.get("extra_options", {})}
    method = CALIBRATION_METHODS[recipe.calibration]
    if method == "Percentile":
        extra["CalibPercentile"] = recipe.percentile
    quantize_static(str(model), str(dest), onnx_calibration_reader(model, calib), quant_format=QuantFormat.QDQ,
                    per_channel=recipe.weights == "per_channel", reduce_range=native.get("reduce_range", False),
                    activation_type=getattr(QuantType, native.get("activation_type", "QInt8")),
                    weight_type=getattr(QuantType, native.get("weight_type", "QInt8")),
                    calibrate_method=getattr(CalibrationMethod, method), extra_options=extra)
    return dest
