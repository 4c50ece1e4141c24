"""Load and verify the user's Keras model (safe_mode on unless the user trusts it)."""

from __future__ import annotations

from pathlib import Path

from edgepipe.core.errors import InputError
from edgepipe.formats.inspect import check_model_file, describe, sniff


def load_keras(path: Path, trust: bool = False):
    """Load a `.keras` file with safe_mode (unless trusted); refuse legacy .h5 unless trusted."""
    import keras

    path = Path(path)
    if not path.exists():
        raise InputError(f"model: expected an existing .keras file. Received: {str(path)!r} (no such file)")
    check_model_path(path, trust)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except ValueError as err:
        if "safe_mode" in str(err) or "lambda" in str(err).lower():
            raise InputError(
                f"model {str(path)!r}: expected a model loadable with safe_mode=True. Received: a model with "
                "Lambda layers or custom code; pass --trust-model (model.trust: true) only if you trust it"
            ) from err
        raise InputError(f"model {str(path)!r}: expected a loadable Keras model. Received: {err}") from err
    except Exception as err:  # keras raises many types for corrupt archives
        raise InputError(
            f"model {str(path)!r}: expected a loadable Keras model. Received: {type(err).__name__}: {err}"
        ) from err


def check_model_path(path: Path, trust: bool = False) -> None:
    """Before anything loads it: a .keras archive that is complete, or (trusted only) a legacy HDF5 file."""
    if path.suffix == ".h5" and sniff(path) == "hdf5":
        if not trust:
            raise InputError(
                f"model {str(path)!r}: expected a .keras file. Received: a legacy HDF5 (.h5) model; "
                "legacy models can execute arbitrary code on load, re-save it as .keras or pass --trust-model"
            )
        return
    if path.suffix != ".keras":
        raise InputError(f"model {str(path)!r}: expected a .keras file or a SavedModel directory. "
                         f"Received: {describe(path)}")
    check_model_file(path, "keras")


def verify_io(model, shape: tuple[int, int, int], n_classes: int, where: str) -> None:
    """Input (None, H, W, C) and output (None, n_classes) must match the config exactly."""
    check_io(len(model.inputs), len(model.outputs), tuple(model.inputs[0].shape[1:]),
             tuple(model.outputs[0].shape[1:]), shape, n_classes, where)


def check_io(n_in: int, n_out: int, in_shape: tuple, out_shape: tuple, shape: tuple, n_classes: int,
             where: str) -> None:
    """The one I/O contract for every model format (Keras, SavedModel signature)."""
    if n_in != 1 or n_out != 1:
        raise InputError(
            f"{where}: expected a single-input, single-output classifier. Received: {n_in} inputs, {n_out} outputs"
        )
    if tuple(in_shape) != tuple(shape):
        raise InputError(
            f"{where}: expected model input (H, W, C) = {tuple(shape)} as configured in input.size/channels. "
            f"Received: {tuple(in_shape)}"
        )
    if tuple(out_shape) != (n_classes,):
        raise InputError(
            f"{where}: expected model output ({n_classes},) for {n_classes} labels. Received: {tuple(out_shape)}"
        )
