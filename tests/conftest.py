"""Shared fixtures: a trained tiny Xception, a class-folder data set, and a config for them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.fixtures import tiny_xception  # noqa: E402
from tests.fixtures.configs import INPUT, tiny_config, write_config  # noqa: E402
from tests.fixtures.shared import once_per_run  # noqa: E402

# session fixtures: `resumed` (an interrupted, resumed run), `chromium` (headless Chromium for report tests),
# `tiny_full_run` (one cold run of every host target, whose stages other runs start from), `tiny_built` (the
# tiny model's artifacts of every host target as objects, from that run's stages), `ship_board` fixtures (a loopback
# sshd board and tiny bundles), `arm64_board` fixtures (a loopback sshd whose sessions run the arm64 userland),
# `two_nodes` (a two-node Ray cluster on loopback whose worker node owns an sshd board; module scope); `scheduling`
# orders the modules for pytest-xdist so that no worker waits for the tiny model; `heap` freezes the long-lived
# objects at each module's start, so full garbage collections skip them
pytest_plugins = ["tests.fixtures.tiny_runs", "tests.fixtures.reliability", "tests.fixtures.chromium",
                  "tests.fixtures.tiny_built", "tests.fixtures.ship_board", "tests.fixtures.arm64_board",
                  "tests.fixtures.ray_cluster", "tests.fixtures.scheduling", "tests.fixtures.heap"]



@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> dict:
    """Train once per test run (shared by the xdist workers): ~20 s on 2 cores."""

    def train(root: Path) -> dict:
        images, labels = tiny_xception.synthetic_images(n_per_class=60, seed=0)
        data = tiny_xception.write_folder(root / "data", images, labels)
        model = tiny_xception.build(input_size=INPUT)
        train_acc = tiny_xception.train(model, images, labels, epochs=8)
        model_path = root / "tiny_xception.keras"
        model.save(model_path)
        return {"root": root, "data": data, "model": model_path, "train_acc": float(train_acc)}

    return once_per_run(tmp_path_factory, "tiny", train)


@pytest.fixture(scope="session")
def tiny_int8_run(tiny_assets, tiny_full_run, tmp_path_factory) -> dict:
    """One `edgepipe run` of the tiny Xception building only tflite-arm/int8, plus a signing key pair
    (for the bundle / ship / bench tests). It starts from the full run's stages: every stage is cached."""
    from typer.testing import CliRunner

    from edgepipe.boards.signing import keygen
    from edgepipe.cli.app import app
    from tests.fixtures.tiny_runs import seed_stages

    d = tmp_path_factory.mktemp("int8run")
    seed_stages(tiny_full_run, d / "out")
    cfg = tiny_config(tiny_assets, d / "out", targets=[{"name": "tflite-arm", "options": {"precisions": ["int8"]}}])
    res = CliRunner().invoke(app, ["run", str(write_config(d / "pipeline.yaml", cfg))], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    key, pub = keygen(d / "keys")
    return {"dir": d, "out": d / "out", "artifact": d / "out" / "artifacts" / "tflite-arm-int8", "key": key, "pub": pub}


@pytest.fixture()
def world(tmp_path):
    """The hostile-input tests' world: a fake .keras model and a small labeled image folder."""
    from tests.fixtures.hostile import fake_keras, image_folder

    model = fake_keras(tmp_path / "m.keras")
    data = image_folder(tmp_path / "data")
    return {"root": tmp_path, "model": model, "data": data}


@pytest.fixture(autouse=True)
def _edgepipe_logger_reaches_caplog():
    """Toolkits reconfigure logging process-wide (OpenVINO's converter raises the root level, others
    disable loggers or logging altogether); a test that did so must not hide the next test's warnings."""
    import logging

    logging.disable(logging.NOTSET)
    log = logging.getLogger("edgepipe")
    log.disabled, log.propagate = False, True
    yield
