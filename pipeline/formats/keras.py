"""Keras (.keras): sniffing (a zip archive), the structural check of the archive, the model's content hash (its
identity in the stage keys), and the FP32 reference runner.

The check reads every member (CRC errors and truncation show there) and wants `config.json`;
it never deserializes the model (that is `pipeline/stages/keras_model.py`, with safe_mode). An archive
is refused when its members claim more than `KERAS_MAX_TOTAL` bytes, more than `KERAS_MAX_MEMBERS`
members, a member path that is absolute or climbs out with `..`, a JSON member over `KERAS_MAX_JSON`,
or a compression ratio over `KERAS_MAX_RATIO` for a member over 16 MiB (a zip bomb): Python's zipfile
never inflates a member past the size it claims, so the claims bound what Keras will read.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgepipe.core import safeio
from edgepipe.core.errors import InputError, expected_received
from edgepipe.formats.runner_input import check_input

KERAS_MAX_TOTAL = 8 * safeio.GiB  # all members, uncompressed
KERAS_MAX_MEMBERS = 10_000
KERAS_MAX_JSON = 64 * safeio.MiB  # config.json, metadata.json (Keras parses them in memory)
KERAS_MAX_RATIO = 100  # uncompressed / compressed, for members over 16 MiB (Keras stores members uncompressed)


def looks_like(head: bytes) -> bool:
    return head.startswith(b"PK")


def check(path: Path, label: str) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            _check_zip_sizes(z.infolist(), label)  # before anything inflates a member
            bad = z.testzip()  # reads every member: CRC errors and truncation show here
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise InputError(expected_received(label, "a complete .keras zip archive",
                                           f"a damaged zip archive ({err})")) from err
    if bad is not None:
        raise InputError(expected_received(label, "a .keras archive with intact members",
                                           f"a CRC error in {bad!r}"))
    if "config.json" not in names:
        raise InputError(expected_received(label, "a .keras archive with config.json",
                                           f"a zip archive with {sorted(names)[:5]}"))


def _check_zip_sizes(infos: list[zipfile.ZipInfo], label: str) -> None:
    """Caps on what a .keras archive's members claim (the sizes zipfile will inflate them to, at most)."""
    if len(infos) > KERAS_MAX_MEMBERS:
        raise InputError(expected_received(label, f"at most {KERAS_MAX_MEMBERS} archive members", len(infos)))
    total = 0
    for info in infos:
        parts = info.filename.replace("\\", "/").split("/")
        if info.filename.startswith("/") or ".." in parts or ":" in parts[0]:
            raise InputError(expected_received(label, "archive members with relative paths inside the archive",
                                               repr(info.filename)))
        total += info.file_size
        ratio = info.file_size / max(1, info.compress_size)
        if info.filename.endswith(".json") and info.file_size > KERAS_MAX_JSON:
            raise InputError(expected_received(label, f"{info.filename} of at most {safeio.human(KERAS_MAX_JSON)}",
                                               f"{safeio.human(info.file_size)} uncompressed"))
        if info.file_size > 16 * safeio.MiB and ratio > KERAS_MAX_RATIO:
            raise InputError(expected_received(
                label, f"archive members compressed at most {KERAS_MAX_RATIO}:1 (a zip bomb otherwise)",
                f"{info.filename} inflating {safeio.human(info.compress_size)} to {safeio.human(info.file_size)}"))
    if total > KERAS_MAX_TOTAL:
        raise InputError(expected_received(label, f"at most {safeio.human(KERAS_MAX_TOTAL)} uncompressed",
                                           f"{safeio.human(total)} in {len(infos)} members"))
_CHUNK = 1 << 20
BATCH = 16  # Keras batched predict's batch size for accuracy passes (the cached reference scores were made so)


CALL = "tf.function"  # how `predict` calls the model (in the reference latency stage's key)


def content_sha256(path: Path) -> str:
    """What a .keras file holds for inference, not how or when it was saved: the identity of a Keras model in
    the stage keys. Keras writes the save time into metadata.json (and the zip entries), Python object ids
    into config.json (`shared_object_id`, different in every process) and, for a compiled model, the
    optimizer's state into the weights file; none of that reaches a converted artifact. So the same model
    saved twice, in two processes, or once with and once without its optimizer has one content hash.
    Hashed: every member's name; metadata.json without `date_saved`; config.json without `compile_config` and
    `shared_object_id`s (a model saved after loading has none: its config objects are no longer shared, which
    changes no weight or op); every dataset of the weights file outside
    `optimizer/` (path, dtype, shape, bytes); other members as they are. A file this cannot read: its file
    hash (the model check refuses a damaged archive before this is asked)."""
    import hashlib
    import json
    import shutil
    import tempfile

    from edgepipe.core.hashing import sha256_file

    h = hashlib.sha256(b"keras-content-v1\0")
    try:
        with zipfile.ZipFile(path) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                h.update(info.filename.encode() + b"\0")
                if info.filename == "metadata.json":
                    meta = json.loads(z.read(info))  # JSON members: bounded by check() (KERAS_MAX_JSON)
                    meta.pop("date_saved", None)
                    h.update(json.dumps(meta, sort_keys=True).encode())
                elif info.filename == "config.json":
                    config = json.loads(z.read(info))
                    config.pop("compile_config", None)
                    h.update(json.dumps(_without_shared_ids(config), sort_keys=True).encode())
                elif info.filename.endswith(".h5"):
                    with z.open(info) as src, tempfile.TemporaryFile() as tmp:  # h5py needs a seekable file
                        shutil.copyfileobj(src, tmp, _CHUNK)
                        h.update(_weights_digest(tmp).encode())
                else:
                    with z.open(info) as src:
                        while chunk := src.read(_CHUNK):
                            h.update(chunk)
                h.update(b"\0")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, ImportError,
            RuntimeError):  # RuntimeError: RecursionError on a deeply nested JSON
        return sha256_file(path)
    return h.hexdigest()


def _without_shared_ids(obj):
    if isinstance(obj, dict):
        return {k: _without_shared_ids(v) for k, v in obj.items() if k != "shared_object_id"}
    if isinstance(obj, list):
        return [_without_shared_ids(v) for v in obj]
    return obj


def _weights_digest(f) -> str:
    import hashlib

    import h5py

    h = hashlib.sha256()
    with h5py.File(f, "r") as weights:
        names: list[str] = []
        weights.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        for name in sorted(n for n in names if n.split("/")[0] != "optimizer"):
            arr = np.asarray(weights[name][()])
            h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class KerasRunner:
    """The FP32 reference. `predict` calls the model as one traced graph (`tf.function`, traced on the
    first call), as a deployed Keras model is served: an eager call pays Python dispatch per op (measured
    on the tiny test Xception: 172 ms eager vs 6.7 ms traced per image, identical scores). `predict_many`
    (accuracy passes) is Keras' batched predict: per image the same scores as `predict` to float rounding
    (<= 1e-6, `tests/test_throughput.py`)."""

    def __init__(self, model):
        self.runtime = "keras"
        self.model = model
        self.shape = (1, *(int(d) for d in model.inputs[0].shape[1:]))
        self._call = None

    def predict(self, image: np.ndarray) -> np.ndarray:
        if self._call is None:
            import tensorflow as tf

            model = self.model

            def call(x):
                return model(x, training=False)

            self._call = tf.function(call, autograph=False, reduce_retracing=True)
        return np.asarray(self._call(check_input(image, self.shape, "Keras")))[0].astype(np.float32)

    def predict_many(self, images: np.ndarray, progress=None) -> np.ndarray:
        if len(images):
            check_input(images[0], self.shape, "Keras")
        callbacks = [_progress_callback(progress, len(images))] if progress else []
        return np.asarray(self.model.predict(images, batch_size=BATCH, verbose=0, callbacks=callbacks),
                          dtype=np.float32)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        return self.predict_many(images)


def _progress_callback(progress, n: int):
    """A Keras callback that advances `progress` by each finished batch's size (changes no number)."""
    import keras

    class Progress(keras.callbacks.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            progress(min(BATCH, n - batch * BATCH))

    return Progress()


def io_shapes(path: Path) -> tuple[tuple | None, int | None]:
    """The model's input shape (H, W, C) and class count from the archive's config.json, without loading the
    model (no Keras import): (None, None) for what the config does not say plainly (e.g. a subclassed model)."""
    import json

    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None, None
    body = config.get("config") if isinstance(config, dict) else None
    layers = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(layers, list) or not layers:
        return None, None
    by_name = {layer.get("name") or (layer.get("config") or {}).get("name"): layer for layer in layers
               if isinstance(layer, dict)}
    shape = None
    for layer in layers:
        cfg = layer.get("config") or {} if isinstance(layer, dict) else {}
        dims = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if isinstance(dims, list) and len(dims) == 4:
            shape = tuple(dims[1:])
            break
    outputs = body.get("output_layers")
    name = outputs[0][0] if isinstance(outputs, list) and outputs and isinstance(outputs[0], list) else None
    layer = by_name.get(name) if name else layers[-1]
    n_classes = None
    for _ in range(8):  # up through Activation / Softmax / Dropout layers to the one that has `units`
        if not isinstance(layer, dict):
            break
        units = (layer.get("config") or {}).get("units")
        if isinstance(units, int):
            n_classes = units
            break
        layer = by_name.get(_inbound(layer))
    return shape, n_classes


def _inbound(layer: dict) -> str | None:
    """The name of the layer feeding `layer` (Keras 3 `keras_history`, or the Keras 2 nested lists)."""
    nodes = layer.get("inbound_nodes") or []
    try:
        arg = nodes[0]["args"][0] if isinstance(nodes[0], dict) else nodes[0][0]
        return arg["config"]["keras_history"][0] if isinstance(arg, dict) else arg[0]
    except (IndexError, KeyError, TypeError):
        return None


def rescales_input(path: Path) -> bool:
    """True when the model's config (nested models included) has a Rescaling layer: such a model (e.g. Keras'
    EfficientNet) scales its own input and takes pixels as 0..255. Read from config.json, never loaded."""
    import json

    def walk(node) -> bool:
        if isinstance(node, dict):
            return node.get("class_name") == "Rescaling" or any(walk(v) for v in node.values())
        return isinstance(node, list) and any(walk(v) for v in node)

    try:
        with zipfile.ZipFile(path) as z:
            return walk(json.loads(z.read("config.json")))
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return False
