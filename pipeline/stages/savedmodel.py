"""Keras model -> TensorFlow SavedModel with a static batch-1 signature (done once)."""

from __future__ import annotations

from pathlib import Path


def export_savedmodel(model, out: Path, shape: tuple[int, int, int]) -> Path:
    import tensorflow as tf

    dest = Path(out) / "saved_model"
    sig = [tf.TensorSpec((1, *shape), tf.float32, name="input")]
    model.export(str(dest), format="tf_saved_model", input_signature=sig, verbose=False)
    return dest


def is_savedmodel_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file())


def copy_savedmodel(src: Path, out: Path) -> Path:
    """A user-supplied SavedModel is the SavedModel stage's output as-is (copied, never edited)."""
    import shutil

    dest = Path(out) / "saved_model"
    shutil.copytree(src, dest, symlinks=False)
    return dest


def load_serving(path: Path, shape: tuple[int, int, int], n_classes: int):
    """The `serving_default` signature of a SavedModel, with its I/O verified against the config."""
    import tensorflow as tf

    from edgepipe.core.errors import InputError

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:  # TF raises several types for a corrupt SavedModel
        raise InputError(f"model {str(path)!r}: expected a loadable SavedModel. Received: {err}") from err
    fn = loaded.signatures.get("serving_default")
    if fn is None:
        raise InputError(
            f"model {str(path)!r}: expected a 'serving_default' signature. Received: {list(loaded.signatures)}"
        )
    from edgepipe.stages.keras_model import check_io

    args = fn.structured_input_signature[1]
    outs = fn.structured_outputs
    check_io(len(args), len(outs), tuple(next(iter(args.values())).shape[1:]) if args else (),
             tuple(next(iter(outs.values())).shape[1:]) if outs else (), shape, n_classes, f"model {str(path)!r}")
    return loaded, fn
