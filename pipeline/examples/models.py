"""The model file a config names: a user path, or a built-in example (built when needed)."""

from __future__ import annotations

from pathlib import Path

from edgepipe.examples.kitchenware import kitchenware_model_path


def resolve_model(cfg) -> Path:
    if cfg.model.path is not None:
        return Path(cfg.model.path)
    if cfg.model.example == "kitchenware-xception":
        return kitchenware_model_path()
    from edgepipe.examples.elpv import build_elpv_model

    return build_elpv_model(cfg)
