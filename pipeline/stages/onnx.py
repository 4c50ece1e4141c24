"""SavedModel -> ONNX FP32 (tf2onnx, NHWC input kept). QDQ INT8 is the onnxruntime quantizer's
(pipeline/quantize/quantizers/onnxruntime.py).

Two things edgepipe does that `python -m tf2onnx.convert` by hand does not, neither changing the model:
- **No rollback copies.** tf2onnx's graph optimizer deep-copies the whole graph before each of its ~24
  passes so that a failing pass can be skipped (`optimize_graph(catch_errors=True)`); for an 83 MB Xception
  that is most of the conversion's time (measured 22-27 s -> 14-15 s, the extra was system time spent
  copying). edgepipe converts with `TF2ONNX_CATCH_ERRORS=FALSE` and, only if that fails, again with
  tf2onnx's default. The models are the same: same ops, attributes, initializers and names, bit-equal
  outputs (benchmarks/README.md).
- **Reproducible bytes.** tf2onnx names the constants it folds `const_fold_opt__<counter>`, and which
  tensor gets which number changes from run to run (the same tensors, permuted names), so two conversions
  of one SavedModel differed in their bytes and every stage downstream of them in its key.
  `canonical_constant_names` renumbers them in the order the graph first uses them. tf2onnx also writes the
  SavedModel's absolute path into the graph's doc string ("converted from /home/.../stages/savedmodel-KEY/
  saved_model"), so the same conversion in another output directory or on another machine differed in its
  bytes; `source_doc` keeps only the last two parts (the content-addressed stage directory and `saved_model`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from edgepipe.core.errors import StageError

log = logging.getLogger("edgepipe")

FOLDED = "const_fold_opt__"  # tf2onnx's prefix for constants its optimizer folded


def convert_onnx(saved_model: Path, out: Path, opset: int = 17, timeout: int = 1800) -> Path:
    """tf2onnx in a subprocess (it builds a TF graph; keeping that out of our process is cheaper)."""
    dest = Path(out) / "model_fp32.onnx"
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--output", str(dest),
           "--opset", str(opset), "--signature_def", "serving_default"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**env, "TF2ONNX_CATCH_ERRORS": "FALSE"})
    if proc.returncode != 0 or not dest.is_file():  # a pass failed without its rollback: tf2onnx's default
        log.warning("tf2onnx without rollback copies failed (exit %s); converting again with them", proc.returncode)
        dest.unlink(missing_ok=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0 or not dest.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise StageError(f"tf2onnx: expected an ONNX model from {str(saved_model)!r}. Received exit code "
                         f"{proc.returncode}: {tail}")
    import onnx

    model = onnx.load(str(dest))
    renamed = canonical_constant_names(model.graph)
    doc = source_doc(saved_model)
    if renamed or model.graph.doc_string != doc:
        model.graph.doc_string = doc
        onnx.save(model, str(dest))
    onnx.checker.check_model(str(dest))
    return dest


def source_doc(saved_model: Path) -> str:
    """The graph's doc string: tf2onnx's "converted from PATH" without the directories above the SavedModel's
    own folder and its parent (in a run: the stage directory, named by its content key)."""
    p = Path(saved_model)
    return f"converted from {p.parent.name}/{p.name}"


def canonical_constant_names(graph) -> int:
    """Rename the initializers tf2onnx folded (`const_fold_opt__N`) to `const_fold_opt__<i>`, i by the
    order of first use in the node list (then of the initializer list for unused ones), and put them in
    that order in the places they held in the initializer list. Returns how many it renumbered (0: the
    graph is unchanged); the graph computes the same function."""
    folded = [t.name for t in graph.initializer if t.name.startswith(FOLDED)]
    if not folded:
        return 0
    is_folded = set(folded)
    order = {}
    for node in graph.node:
        for name in node.input:
            if name in is_folded and name not in order:
                order[name] = len(order)
    for name in folded:
        order.setdefault(name, len(order))
    taken = {n for node in graph.node for n in [*node.input, *node.output]} | {t.name for t in graph.initializer}
    taken -= is_folded
    new = {name: f"{FOLDED}{i}" for name, i in order.items()}
    renamed = {f"{FOLDED}{i}": i for i in order.values()}
    if taken & set(new.values()):  # a name outside the folded set would collide: leave the graph as it is
        return 0
    for t in graph.initializer:
        t.name = new.get(t.name, t.name)
    # their places in the initializer list change from run to run too: fill those places in the new order
    items = list(graph.initializer)
    places = [i for i, t in enumerate(items) if t.name in renamed]
    ordered = sorted((items[i] for i in places), key=lambda t: renamed[t.name])
    for i, t in zip(places, ordered, strict=True):
        items[i] = t
    kept = [type(t).FromString(t.SerializeToString()) for t in items]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in new:
                node.input[i] = new[name]
    for info in graph.value_info:
        info.name = new.get(info.name, info.name)
    return len(folded)
