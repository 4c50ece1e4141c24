"""pipeline.yaml is strict: unknown keys and bad values are errors naming key, expected, received."""

from __future__ import annotations

import pytest

from edgepipe.config.schema import example_config_path, load_config, parse_config
from edgepipe.core.errors import ConfigError
from tests.fixtures.configs import tiny_config, write_config

FAKE_ASSETS = {"model": "/m/model.keras", "data": "/d"}


def cfg(**overrides):
    return tiny_config(FAKE_ASSETS, "/tmp/out", **overrides)


def test_valid_config_parses_with_typed_target_options():
    c = parse_config(cfg())
    assert c.input.size == (71, 71)
    assert [t.name for t in c.targets] == ["tflite-arm", "openvino-cpu"]
    assert c.targets[0].typed_options().int8_io is True
    assert c.targets[1].typed_options().recipe == "default"


def test_unknown_top_level_key_is_named():
    with pytest.raises(ConfigError, match=r"colour: unknown key"):
        parse_config({**cfg(), "colour": "red"})


def test_unknown_nested_key_is_named_with_its_path():
    c = cfg()
    c["gates"] = {"max_top1_drop": 1.0, "max_p99_ms": 3}
    with pytest.raises(ConfigError, match=r"gates\.max_p99_ms: unknown key"):
        parse_config(c)


def test_wrong_type_says_expected_and_received():
    with pytest.raises(ConfigError) as e:
        parse_config(cfg(threads="many"))
    assert "threads" in str(e.value) and "Received: 'many'" in str(e.value)


def test_model_needs_exactly_one_of_example_or_path():
    with pytest.raises(ConfigError, match="exactly one of 'example' or 'path'"):
        parse_config(cfg(model={"example": "elpv-xception", "path": "/x.keras"}))
    with pytest.raises(ConfigError, match="exactly one of"):
        parse_config(cfg(model={}))


def test_unknown_target_lists_known_ones():
    with pytest.raises(ConfigError, match=r"targets\.0\.name: expected one of \[.*'openvino-cpu', .*'tflite-arm'\]"):
        parse_config(cfg(targets=[{"name": "tpu-9000"}]))


def test_target_options_are_validated_by_the_target():
    with pytest.raises(ConfigError, match=r"options\.preset"):
        parse_config(cfg(targets=[{"name": "openvino-cpu", "options": {"preset": "fastest"}}]))
    with pytest.raises(ConfigError, match=r"options\.int8_ios: unknown key"):
        parse_config(cfg(targets=[{"name": "tflite-arm", "options": {"int8_ios": True}}]))


def test_duplicate_targets_and_labels_rejected():
    with pytest.raises(ConfigError, match="each target once"):
        parse_config(cfg(targets=[{"name": "tflite-arm"}, {"name": "tflite-arm"}]))
    c = cfg()
    c["data"]["labels"] = ["a", "b", "a"]
    with pytest.raises(ConfigError, match=r"duplicates: \['a'\]"):
        parse_config(c)


def test_out_of_range_values():
    with pytest.raises(ConfigError, match=r"input\.size"):
        parse_config(cfg(input={"size": [16, 16]}))
    with pytest.raises(ConfigError, match=r"latency\.runs"):
        parse_config(cfg(latency={"runs": 49}))
    with pytest.raises(ConfigError, match=r"gates\.max_top1_drop"):
        parse_config(cfg(gates={"max_top1_drop": -1}))


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="expected an existing YAML file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="expected valid UTF-8 YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level. Received: list"):
        load_config(lst)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    c = cfg(model={"path": "models/m.keras"}, output="out")
    c["data"]["calibration"]["source"] = "data"
    path = write_config(tmp_path / "pipeline.yaml", c)
    loaded = load_config(path)
    assert loaded.model.path == tmp_path / "models" / "m.keras"
    assert loaded.output == tmp_path / "out"
    assert loaded.data.calibration.source == str(tmp_path / "data")
    assert loaded.data.validation.source == "/d"  # absolute stays


@pytest.mark.parametrize("name", ["elpv-xception", "kitchenware-xception"])
def test_builtin_example_configs_are_valid(name):
    c = load_config(example_config_path(name))
    assert c.model.example == name


def _path_fields(model_cls, prefix=()):
    """Every (dotted path, field) of a schema typed as a config path (edgepipe.config.paths), found by walking
    the schema's annotations rather than by a hand-written list."""
    import typing

    from pydantic import BaseModel

    from edgepipe.config.paths import resolve_path

    out = []
    for name, field in model_cls.model_fields.items():
        def walk(tp, name=name):
            if any(getattr(m, "func", None) is resolve_path for m in getattr(tp, "__metadata__", ())):
                return True
            found = False
            for arg in typing.get_args(tp):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    out.extend(_path_fields(arg, prefix + (name,)))
                elif walk(arg):
                    found = True
            return found
        if any(getattr(m, "func", None) is resolve_path for m in field.metadata) or walk(field.annotation):
            out.append(".".join(prefix + (name,)))
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out.extend(_path_fields(field.annotation, prefix + (name,)))
    return out


def test_every_path_field_of_the_schema_resolves_against_the_config_file(tmp_path):
    """Relative paths in a config file are relative to the file, for every path field the schema has."""
    from edgepipe.config.schema import PipelineConfig

    fields = set(_path_fields(PipelineConfig))
    assert {"model.path", "data.calibration.source", "data.validation.source", "data.accuracy_control.source",
            "data.labels", "output"} <= fields, fields
    raw = tiny_config({"model": "m/model.keras", "data": "imgs"}, "out")
    raw["data"]["labels"] = "labels.txt"
    raw["data"]["accuracy_control"] = {"source": "control", "split": "all"}
    (tmp_path / "cfg").mkdir()
    c = load_config(write_config(tmp_path / "cfg" / "pipeline.yaml", raw))
    base = tmp_path / "cfg"
    assert c.model.path == base / "m/model.keras" and c.output == base / "out"
    assert c.data.labels == base / "labels.txt"
    for sub in (c.data.calibration, c.data.validation):
        assert sub.source == str(base / "imgs")
    assert c.data.accuracy_control.source == str(base / "control")
    assert parse_config({**raw, "data": {**raw["data"], "calibration": {"source": "example:elpv", "split": "all"}}},
                        base=base).data.calibration.source == "example:elpv"  # built-in sources stay as they are


def test_relative_accuracy_control_overlapping_validation_is_refused(tmp_path):
    """`data.accuracy_control` is resolved like every other path, so a relative spelling of the validation
    folder cannot slip past the held-out check."""
    raw = tiny_config({"model": "/m/model.keras", "data": str(tmp_path / "imgs")}, "out")
    raw["data"]["accuracy_control"] = {"source": "imgs", "split": "test"}  # the same folder, written relative
    with pytest.raises(ConfigError, match="data.accuracy_control: expected images held out from the validation"):
        load_config(write_config(tmp_path / "pipeline.yaml", raw))


def test_sweep_path_fields_resolve_against_the_sweep_file(tmp_path):
    from edgepipe.sweeps.config import SweepSpec

    assert {"base", "output", "models.path"} <= set(_path_fields(SweepSpec))
