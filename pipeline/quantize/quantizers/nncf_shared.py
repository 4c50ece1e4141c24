"""NNCF post-training quantization of one IR under several configurations from ONE statistics pass.

`nncf.quantize` runs the model over the calibration images to collect the statistics its quantizers and
bias correction need, then quantizes. openvino-cpu (`target_device=ANY`) and openvino-npu (`NPU`) quantize
the same IR from the same images, so a run made that pass twice (49 + 45 s on the elpv example).
`quantize_shared` does what `nncf.quantize` does on an OpenVINO model (nncf/quantization/quantize_model.py
`quantize` -> nncf/openvino/quantization/quantize_model.py `quantize_impl` / `native_quantize_impl`), except
that the statistic points of every configuration are registered with one statistics aggregator
(`nncf.quantization.algorithms.pipeline.collect_statistics` takes several containers; each algorithm's
points are keyed by that algorithm instance, and equal collectors are computed once) and each configuration
is then applied from its own collected points. The IRs are byte-identical to separate `nncf.quantize` calls
(tests/test_nncf_shared.py checks the CPU / NPU pair on the tiny model; on the example both IRs matched).

It leans on NNCF internals (the pipeline of `PostTrainingQuantization`, its statistics helpers), pinned by
pyproject's `nncf<3.5`. A configuration whose pipeline has more than one step (SmoothQuant, which collects
statistics again on the smoothed model) or a model with If ops is quantized by `nncf.quantize` itself, and so
is every stage, with a warning, when those internals are missing (`quantizers/nncf.py:int8_stage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def quantize_shared(ir: Path, calib: np.ndarray, jobs: Sequence[tuple[dict, str]]) -> list:
    """The quantized `openvino.Model` of each (`nncf.quantize` keyword arguments, target device) job (the
    arguments as `nncf.nncf_arguments(recipe)` gives them), from one pass over `calib`."""
    import nncf
    import openvino as ov
    from nncf.openvino.graph.nncf_graph_builder import GraphConverter
    from nncf.openvino.quantization.quantize_model import (
        compress_quantize_weights_transformation,
        dump_parameters,
        get_number_if_op,
        is_weight_compression_needed,
        remove_friendly_name_duplicates,
    )
    from nncf.quantization.advanced_parameters import convert_to_dict_recursively
    from nncf.quantization.algorithms.pipeline import collect_statistics
    from nncf.quantization.algorithms.post_training.algorithm import PostTrainingQuantization
    from nncf.quantization.quantize_model import _update_advanced_quantization_parameters

    from edgepipe.calibration.adapters import nncf_dataset
    from edgepipe.core.logs import tame_logger, toolkit_stdout

    dataset = nncf_dataset(calib)
    model = remove_friendly_name_duplicates(ov.Core().read_model(str(ir)))
    runs = []
    for arguments, device in jobs:  # normalized as nncf.quantize normalizes them
        kw = dict(arguments)
        kw["advanced_parameters"] = _update_advanced_quantization_parameters(kw.get("advanced_parameters"), dataset)
        kw.setdefault("fast_bias_correction", True)
        target = nncf.TargetDevice(device)
        runs.append((kw, target, PostTrainingQuantization(target_device=target, subset_size=len(calib), **kw)))
    if get_number_if_op(model) > 0 or any(len(algo._pipeline.pipeline_steps) != 1 for _, _, algo in runs):
        raise NotShareable("a pipeline of more than one step, or a model with If ops")
    tame_logger("nncf")
    with toolkit_stdout():
        graph = GraphConverter.create_nncf_graph(model)
        points = [algo._pipeline.get_statistic_points_for_step(0, model, graph) for _, _, algo in runs]
        collect_statistics(points, model, graph, dataset)
        out = []
        for (kw, target, algo), collected in zip(runs, points, strict=True):
            quantized = algo.apply(model, graph, statistic_points=collected, dataset=dataset)
            if is_weight_compression_needed(kw["advanced_parameters"]):
                compress_quantize_weights_transformation(quantized)
            dump_parameters(quantized, {
                "preset": kw.get("preset"), "target_device": target.value, "subset_size": len(calib),
                "fast_bias_correction": kw["fast_bias_correction"], "model_type": kw.get("model_type"),
                "ignored_scope": kw.get("ignored_scope"),
                "advanced_parameters": convert_to_dict_recursively(kw["advanced_parameters"])})
            out.append(quantized)
    return out


class NotShareable(Exception):
    """The configurations cannot share one statistics pass; quantize them one by one."""
