"""Shared fixtures: a trained tiny Xception, a class-folder data set, and a config for them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests import tiny_xception  # noqa: E402

pytest_plugins = ["tests.reliability_fixtures"]  # the `resumed` session fixture (interrupted, resumed run)

INPUT = 71


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> dict:
    """Train once per session: ~20 s on 2 cores."""
    root = tmp_path_factory.mktemp("tiny")
    images, labels = tiny_xception.synthetic_images(n_per_class=60, seed=0)
    data = tiny_xception.write_folder(root / "data", images, labels)
    model = tiny_xception.build(input_size=INPUT)
    train_acc = tiny_xception.train(model, images, labels, epochs=8)
    model_path = root / "tiny_xception.keras"
    model.save(model_path)
    return {"root": root, "data": data, "model": model_path, "train_acc": train_acc}


def tiny_config(assets: dict, out: Path, **overrides) -> dict:
    cfg = {
        "model": {"path": str(assets["model"])},
        "input": {"size": [INPUT, INPUT], "channels": 3, "preprocessing": "xception"},
        "data": {
            "labels": list(tiny_xception.CLASSES),
            "splits": {"seed": 0, "calibration": 30, "test_fraction": 0.3},
            "calibration": {"source": str(assets["data"]), "split": "calibration"},
            "validation": {"source": str(assets["data"]), "split": "test"},
            "min_calibration": 20,
        },
        "targets": [{"name": "tflite-arm"}, {"name": "openvino-cpu"}],
        "gates": {"max_top1_drop": 10.0},
        "latency": {"warmup": 2, "runs": 50},
        "output": str(out),
        "threads": 2,
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def tiny_int8_run(tiny_assets, tmp_path_factory) -> dict:
    """One `edgepipe run` of the tiny Xception building only tflite-arm/int8, plus a signing key pair
    (for the bundle / ship / bench tests)."""
    from typer.testing import CliRunner

    from pipeline.boards.signing import keygen
    from pipeline.cli.app import app

    d = tmp_path_factory.mktemp("int8run")
    cfg = tiny_config(tiny_assets, d / "out", targets=[{"name": "tflite-arm", "options": {"precisions": ["int8"]}}])
    res = CliRunner().invoke(app, ["run", str(write_config(d / "pipeline.yaml", cfg))], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    key, pub = keygen(d / "keys")
    return {"dir": d, "out": d / "out", "artifact": d / "out" / "artifacts" / "tflite-arm-int8", "key": key, "pub": pub}
