"""Compile an OpenVINO IR for a device, export the compiled blob, and record what the plugin chose.

The blob (`CompiledModel.export_model`) is specific to the device, its plugin version and, for the
CPU, the host's ISA. It is re-imported with `Core.import_model` *with the same config*: on this CPU
an import without `INFERENCE_PRECISION_HINT` silently runs bf16 (the plugin's default) although the
blob was compiled for f32 — the runner therefore always imports with the recorded config and the
record says which precision the plugin reports.

The record holds what the plugin used, from the runtime (execution) graph: each node's
`primitiveType` (oneDNN kernel, e.g. `brgconv_avx512_amx_I8`, `jit_avx512_vnni`), its
`runtimePrecision`, and the CPU plugin's `OPTIMIZATION_CAPABILITIES`.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from edgepipe.core.versions import onednn_flags
from edgepipe.formats.openvino_ir import plain

COMPUTE_LAYERS = frozenset({"Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution"})
# substrings of oneDNN primitive names -> instruction set, most specific first
ISA_TOKENS = (("amx", "AMX"), ("avx512_core_vnni", "AVX-512 VNNI"), ("vnni", "VNNI"), ("avx512", "AVX-512"),
              ("avx2", "AVX2"), ("sse42", "SSE4.2"), ("neon", "NEON"), ("acl", "ARM Compute Library"))


def config_for(threads: int, hint: str, precision: str | None, streams: int | None) -> dict:
    cfg = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint}
    if precision is not None:
        cfg["INFERENCE_PRECISION_HINT"] = precision
    if streams is not None:
        cfg["NUM_STREAMS"] = streams
    return cfg


def exec_graph_summary(compiled, host_flags: set[str] | None = None) -> dict:
    """What the plugin actually runs: kernels and precisions of the compute layers, and the ISA."""
    kernels, precisions = Counter(), Counter()
    for node in compiled.get_runtime_model().get_ordered_ops():
        rt = node.get_rt_info()
        layer = _rt(rt, "layerType")
        if layer not in COMPUTE_LAYERS:
            continue
        kernels[f"{layer}:{_rt(rt, 'primitiveType')}"] += 1
        precisions[_rt(rt, "runtimePrecision")] += 1
    return {"kernels": dict(kernels.most_common()), "runtime_precisions": dict(precisions),
            "isa": isa_labels(kernels, host_flags or set())}


def isa_labels(kernels, host_flags: set[str]) -> list[str]:
    """The instruction sets named by the kernels. oneDNN's AVX-512 int8 kernels no longer say VNNI in their
    names (`brgconv_avx512_1x1_I8`); on a CPU whose flags have avx512_vnni they use it (vpdpbusd), so an
    int8 AVX-512 kernel there is labelled "AVX-512 VNNI" rather than "AVX-512"."""
    labels = set()
    for kernel in kernels:
        k = kernel.lower()
        found = {label for token, label in ISA_TOKENS if token in k}
        if found == {"AVX-512"} and k.endswith(("_i8", "_u8")) and "avx512_vnni" in host_flags:
            found = {"AVX-512 VNNI"}
        labels |= found
    return sorted(labels)


def _rt(rt, key: str) -> str:
    try:
        return rt[key].astype(str)
    except (KeyError, RuntimeError, AttributeError):
        return "?"


def compile_and_export(xml: Path, out: Path, device: str, config: dict, stem: str) -> dict:
    """Compile `xml` for `device`, write `<stem>.blob` and `<stem>.compile.json`, copy the IR beside them."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(xml), device, config)
    blob = out / f"{stem}.blob"
    blob.write_bytes(compiled.export_model().getvalue())  # export_model() returns an io.BytesIO
    for src in (xml, xml.with_suffix(".bin")):
        shutil.copy2(src, out / src.name)
    record = {
        "device": device,
        "config": {k: (v if isinstance(v, int | str) else str(v)) for k, v in config.items()},
        "inference_precision": _prop(compiled, "INFERENCE_PRECISION_HINT"),
        "performance_hint": _prop(compiled, "PERFORMANCE_HINT"),
        "streams": _prop(compiled, "NUM_STREAMS"),
        "threads": _prop(compiled, "INFERENCE_NUM_THREADS"),
        "optimization_capabilities": [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")],
        "device_name": _prop(core, "FULL_DEVICE_NAME", device),
        "openvino": ov.__version__,
        "blob": blob.name,
        "blob_bytes": blob.stat().st_size,
    }
    if device == "CPU":
        record["exec_graph"] = exec_graph_summary(compiled, onednn_flags())  # under an ISA cap: no VNNI label
    (out / f"{stem}.compile.json").write_text(json.dumps(record, indent=2))
    return record


def _prop(obj, name: str, device: str | None = None) -> str | None:
    try:
        v = obj.get_property(device, name) if device else obj.get_property(name)
    except RuntimeError:
        return None
    return plain(v)


def opset_versions(xml: Path) -> dict[str, int]:
    """{op type: opset number} from an IR's XML (`<layer type=... version="opsetN">`)."""
    import xml.etree.ElementTree as ET

    found: dict[str, int] = {}
    for layer in ET.parse(xml).getroot().iter("layer"):
        version = layer.get("version", "")
        if version.startswith("opset") and version[5:].isdigit():
            found[layer.get("type")] = max(found.get(layer.get("type"), 0), int(version[5:]))
    return found
