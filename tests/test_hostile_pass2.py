"""Hostile inputs, second pass: holes found by trying the command line with inputs the first pass
(tests/test_hostile_inputs.py, test_hostile_boards.py, test_bad_inputs.py) did not cover, each fixed
where it is born. Nothing here trains or loads a model: the structurally valid .keras stand-in
(`tests/fixtures/hostile.fake_keras`) is enough, except where a test says otherwise.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.config.schema import load_config
from edgepipe.core.errors import ConfigError
from tests.fixtures.hostile import config, fake_keras, image_folder, snapshot, write_yaml

runner = CliRunner()


def run_cli(*args):
    res = runner.invoke(app, [*map(str, args)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception  # no traceback
    return res


@pytest.fixture()
def world(tmp_path):
    model = fake_keras(tmp_path / "m.keras")
    data = image_folder(tmp_path / "data")
    return {"root": tmp_path, "model": model, "data": data}


# ---- YAML: a repeated key, an integer Python refuses to convert -----------------------------------
def test_a_key_given_twice_and_a_huge_integer_are_config_errors_naming_the_lines(world, tmp_path):
    text = write_yaml(tmp_path / "p.yaml", config(world["model"], world["data"], tmp_path / "out")).read_text()
    (tmp_path / "dup.yaml").write_text(text + "threads: 2\nthreads: 8\n")  # PyYAML alone keeps 8, silently
    with pytest.raises(ConfigError, match=r"expected each key once in a mapping\. Received: 'threads' on line "
                                          r"\d+ and again on line \d+"):
        load_config(tmp_path / "dup.yaml")
    (tmp_path / "nested.yaml").write_text(text.replace("output:", "output: x\noutput:", 1))
    with pytest.raises(ConfigError, match=r"'output' on line"):
        load_config(tmp_path / "nested.yaml")
    (tmp_path / "big.yaml").write_text(text + "threads: " + "9" * 5000 + "\n")  # int() refuses > 4300 digits
    with pytest.raises(ConfigError, match=r"expected YAML values Python can read\. Received: Exceeds the limit"):
        load_config(tmp_path / "big.yaml")
    for name in ("dup.yaml", "big.yaml"):  # through the CLI, run and sweep: exit 2, no traceback
        for command in ("run", "sweep"):
            res = run_cli(command, tmp_path / name)
            assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    # merge keys may still be overridden: that is what they are for
    (tmp_path / "merge.yaml").write_text(text + "gates: &g {max_top1_drop: 2.0}\nlatency:\n  <<: {warmup: 1, runs: 60}"
                                                "\n  warmup: 3\n")
    cfg = load_config(tmp_path / "merge.yaml")
    assert (cfg.latency.warmup, cfg.latency.runs) == (3, 60)
    assert not (tmp_path / "out").exists()
