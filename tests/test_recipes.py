"""Quantization recipes: schema, built-in table, impossible combinations, CLI listing."""

from __future__ import annotations

import json

import pytest

from edgepipe.config.schema import parse_config
from edgepipe.core.errors import ConfigError
from edgepipe.quantize.recipes import BUILTIN, QUANTIZERS, Recipe, problems, resolve
from tests.fixtures.cli import cli_probe
from tests.fixtures.configs import tiny_config

FAKE_ASSETS = {"model": "/m/model.keras", "data": "/d"}


def cfg(targets, **overrides):
    return tiny_config(FAKE_ASSETS, "/tmp/out", targets=targets, **overrides)


def test_default_recipe_is_possible_everywhere_and_leaves_toolchain_defaults():
    d = BUILTIN["default"]
    assert all(problems(d, q) == [] for q in QUANTIZERS)
    assert d.activations is None and d.calibration is None and d.nncf_preset is None
    assert d.weights == "per_channel" and d.activation_bits == 8 and d.calibration_size is None


def test_every_builtin_recipe_is_possible_for_at_least_one_quantizer():
    for name, r in BUILTIN.items():
        assert any(not problems(r, q) for q in QUANTIZERS), name


@pytest.mark.parametrize(("target", "recipe", "reason"), [
    ("tflite-arm", "kl", r"TFLiteConverter's calibrator records only min/max"),
    ("tflite-arm", "mse", r"calibration 'mse' is not available"),
    ("tflite-arm", "nncf-mixed", r"nncf_preset 'mixed' is an NNCF setting"),
    ("tflite-arm", "nncf-smoothquant", r"smooth_quant is supported on the NNCF path only"),
    ("openvino-cpu", "tflite-16x8", r"activation_bits 16 \(16x8\) is a TFLite mode"),
    ("openvino-cpu", "kl", r"no KL/entropy estimator"),
    ("onnx-cpu", "mse", r"no MSE"),
    ("onnx-cpu", "nncf-full-bias", r"bias_correction 'full' is an NNCF setting"),
])
def test_impossible_recipe_for_a_target_is_a_config_error_that_says_why(target, recipe, reason):
    with pytest.raises(ConfigError, match=rf"targets\[0\] \({target}\) options\.recipe '{recipe}' is impossible"
                                          rf".*{reason}"):
        parse_config(cfg([{"name": target, "options": {"recipe": recipe}}]))


def test_tflite_symmetric_int8_activations_rejected_but_16x8_accepted():
    user = {"sym8": {"activations": "symmetric"}, "sym16": {"activations": "symmetric", "activation_bits": 16}}
    with pytest.raises(ConfigError, match=r"activations 'symmetric' is not available with 8-bit TFLite"):
        parse_config(cfg([{"name": "tflite-arm", "options": {"recipe": "sym8"}}],
                         quantization={"recipes": user}))
    c = parse_config(cfg([{"name": "tflite-arm", "options": {"recipe": "sym16"}}], quantization={"recipes": user}))
    assert c.recipe_for(c.targets[0]).activation_bits == 16
    # the same recipe is fine for NNCF (symmetric activations are its performance preset)
    parse_config(cfg([{"name": "openvino-cpu", "options": {"recipe": "sym8"}}], quantization={"recipes": user}))


def test_user_recipes_are_strict_and_cannot_shadow_builtins():
    with pytest.raises(ConfigError, match=r"quantization\.recipes\.mine\.calibraton: unknown key"):
        parse_config(cfg([{"name": "tflite-arm"}], quantization={"recipes": {"mine": {"calibraton": "kl"}}}))
    with pytest.raises(ConfigError, match=r"quantization\.recipes\.mine\.percentile: Input should be less than 100"):
        parse_config(cfg([{"name": "tflite-arm"}], quantization={"recipes": {"mine": {"percentile": 100}}}))
    with pytest.raises(ConfigError, match=r"built-in recipes cannot be redefined\)\. Received: \['default'\]"):
        parse_config(cfg([{"name": "tflite-arm"}], quantization={"recipes": {"default": {}}}))


def test_unknown_recipe_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"options\.recipe: expected a recipe name in \[.*'default'.*\]\. "
                                          r"Received: 'fastest'"):
        parse_config(cfg([{"name": "openvino-cpu", "options": {"recipe": "fastest"}}]))


def test_openvino_preset_option_moved_into_recipes():
    with pytest.raises(ConfigError, match=r"options\.preset: expected the NNCF preset in the quantization recipe"):
        parse_config(cfg([{"name": "openvino-cpu", "options": {"preset": "mixed"}}]))


def test_recipe_resolution_prefers_the_config_and_cache_params_exclude_description():
    mine = Recipe(description="x", calibration_size=10)
    assert resolve("mine", {"mine": mine}) is mine
    assert resolve("default") is BUILTIN["default"]
    assert "description" not in mine.cache_params() and mine.cache_params()["calibration_size"] == 10
    assert Recipe(description="other").cache_params() == BUILTIN["default"].cache_params()


def test_nncf_arguments_follow_the_recipe():
    import nncf

    from edgepipe.quantize.quantizers.nncf import nncf_arguments

    assert nncf_arguments(BUILTIN["default"]) == {"preset": nncf.QuantizationPreset.PERFORMANCE}
    assert nncf_arguments(None) == {"preset": nncf.QuantizationPreset.PERFORMANCE}
    kw = nncf_arguments(Recipe(nncf_preset="mixed", bias_correction="full", weights="per_tensor",
                               calibration="percentile", percentile=99.9))
    assert kw["preset"] == nncf.QuantizationPreset.MIXED and kw["fast_bias_correction"] is False
    adv = kw["advanced_parameters"]
    assert adv.weights_quantization_params.per_channel is False
    assert adv.activations_range_estimator_params.max.quantile_outlier_prob == pytest.approx(1e-3)
    sq = nncf_arguments(BUILTIN["nncf-smoothquant"])
    assert sq["model_type"] == nncf.ModelType.TRANSFORMER
    assert sq["advanced_parameters"].smooth_quant_alphas.convolution == 0.5


def test_seven_bit_weights_reach_nncf_and_are_refused_where_no_api_has_them():
    """`weight_bits: 7` (the no-saturation recipe) is NNCF's overflow fix on every layer and ORT's reduce_range;
    TFLite and the Edge TPU refuse it with the reason; the field leaves every other recipe's cache key as is."""
    from nncf.quantization.advanced_parameters import OverflowFix

    from edgepipe.quantize.quantizers.nncf import nncf_arguments
    from edgepipe.quantize.recipes import problems

    recipe = BUILTIN["no-saturation"]
    assert nncf_arguments(recipe)["advanced_parameters"].overflow_fix == OverflowFix.ENABLE
    assert nncf_arguments(BUILTIN["mse"])["advanced_parameters"].overflow_fix is None  # NNCF picks its own
    assert problems(recipe, "nncf") == [] and problems(recipe, "onnxruntime") == []
    for quantizer in ("tflite", "edgetpu"):
        (why,) = problems(recipe, quantizer)
        assert why.startswith(f"weight_bits 7 is not available on the {quantizer} path") and "XNNPACK" in why
    assert "weight_bits" not in BUILTIN["eq-sep"].cache_params() and BUILTIN["default"].key_params() == {}
    assert recipe.cache_params()["weight_bits"] == 7 and "7-bit weight range" in recipe.summary()


def test_cli_lists_recipes_without_importing_a_toolkit():
    r = cli_probe("recipes", "--json")
    assert r["code"] == 0 and r["heavy"] == []
    rows = {row["name"]: row for row in json.loads(r["out"])}
    assert set(BUILTIN) <= set(rows)
    assert rows["kl"]["quantizers"]["onnxruntime"]["possible"] is True
    assert rows["kl"]["quantizers"]["tflite"]["possible"] is False
    assert "min/max" in rows["kl"]["quantizers"]["tflite"]["problems"][0]
    assert rows["tflite-16x8"]["quantizers"]["nncf"]["possible"] is False
    # a per-target recipe is possible where every recipe it hands that quantizer's targets is (computed)
    assert all(v["possible"] for v in rows["faithful"]["quantizers"].values()), rows["faithful"]
    assert rows["faithful"]["settings"]["per_target"]["onnx-cpu"] == "eq-sep-u8s8"


def test_a_per_target_recipe_is_impossible_where_it_hands_a_quantizer_a_recipe_it_cannot_build():
    from edgepipe.quantize.recipes import describe_all

    wrong = {"onnx-cpu": "tflite"}  # as if onnx-cpu quantized with TFLite: eq-sep-u8s8 has uint8 activations
    row = next(r for r in describe_all(None, wrong) if r["name"] == "faithful")
    assert row["quantizers"]["tflite"]["possible"] is False
    assert row["quantizers"]["tflite"]["problems"][0].startswith("eq-sep-u8s8: integer_types u8s8")
    assert row["quantizers"]["onnxruntime"]["possible"] is True


def test_default_recipe_adds_nothing_to_cache_keys_and_others_do():
    assert BUILTIN["default"].key_params() == {}
    assert Recipe(description="same settings, other words").key_params() == {}
    assert BUILTIN["per-tensor"].key_params() == {"recipe": BUILTIN["per-tensor"].cache_params()}


def test_transform_fields_are_refused_until_their_stage_module_exists():
    from importlib.util import find_spec

    r = Recipe(equalize_separable=True)
    msgs = problems(r, "tflite")
    if find_spec("edgepipe.quantize.equalize") is None:
        assert msgs == ["equalize_separable needs edgepipe.quantize.equalize, "
                        "which this edgepipe build does not have yet"]
    else:
        assert msgs == []


def test_every_target_quantizer_has_one_module_with_its_capability_and_its_stage():
    from edgepipe import targets
    from edgepipe.quantize import quantizers

    used = {getattr(targets.load_module(name), "QUANTIZER", None) for name in targets.REGISTRY} - {None}
    assert used == set(quantizers.NAMES) == set(QUANTIZERS)  # no target without a module, no orphan module
    for name in quantizers.NAMES:
        mod = quantizers.load(name)
        assert callable(mod.problems) and callable(mod.int8_stage), name
        assert mod.problems(BUILTIN["default"]) == []
    with pytest.raises(KeyError, match=r"expected one of \['tflite', 'nncf', 'onnxruntime', 'edgetpu'\]\. "
                                       r"Received: 'bogus'"):
        quantizers.load("bogus")
    assert problems(BUILTIN["default"], "bogus") == [
        "unknown quantizer 'bogus'; expected one of ['tflite', 'nncf', 'onnxruntime', 'edgetpu']"]


@pytest.mark.parametrize("stat", ["minmax", "mean_minmax", "percentile", "mse", "kl"])
def test_a_statistic_a_quantizer_accepts_is_one_its_calls_use(stat):
    """Capability and translation sit in one module: what `problems` accepts is exactly what the
    toolchain call is given (NNCF: a range estimator; onnxruntime: a CalibrationMethod)."""
    from onnxruntime.quantization import CalibrationMethod

    from edgepipe.quantize.quantizers.nncf import nncf_arguments
    from edgepipe.quantize.quantizers.onnxruntime import CALIBRATION_METHODS

    recipe = Recipe(calibration=stat)
    if not problems(recipe, "nncf"):
        assert nncf_arguments(recipe)["advanced_parameters"].activations_range_estimator_params is not None
    else:
        assert "advanced_parameters" not in nncf_arguments(recipe)
    if not problems(recipe, "onnxruntime"):
        assert hasattr(CalibrationMethod, CALIBRATION_METHODS[stat])
    else:
        assert stat not in CALIBRATION_METHODS
    assert (not problems(recipe, "tflite")) == (stat == "minmax") == (not problems(recipe, "edgetpu"))


@pytest.mark.parametrize("quantizer", ["onnxruntime", "nncf", "tflite"])
@pytest.mark.parametrize("recipe", ["default", "budget"])
def test_an_int8_stage_key_names_its_source_model(quantizer, recipe):
    """The stage key of every INT8 stage holds the key of the float model it quantizes: a regression test for
    the ONNX Runtime key, whose source entry was named "onnx" and so replaced by tool_versions' "onnx" (onnx's
    version): every model with the same data and recipe then shared one cached INT8 artifact."""
    from types import SimpleNamespace

    from edgepipe.quantize.quantizers import nncf, onnxruntime, tflite
    from edgepipe.quantize.recipes import BUILTIN, Recipe

    seen = []
    calib = SimpleNamespace(sha256="calib-sha", images=None)
    source = SimpleNamespace(key="SOURCE-KEY", path=None, meta={"file": "x"})

    class Ctx:
        accuracy_control = None

        def stage(self, name, params, fn):
            seen.append(params)
            return SimpleNamespace(name=name, key="k", meta={}, path=None)

        def calibration_for(self, _recipe):
            return calib

        def savedmodel(self):
            return source

    r = BUILTIN["default"] if recipe == "default" else Recipe(min_agreement=0.9)
    ctx = Ctx()
    {"onnxruntime": lambda: onnxruntime.int8_stage(ctx, source, r, calib),
     "nncf": lambda: nncf.int8_stage(ctx, source, r, calib),
     "tflite": lambda: tflite.int8_stage(ctx, recipe=r)}[quantizer]()
    assert seen and "SOURCE-KEY" in seen[-1].values(), seen


@pytest.mark.parametrize("types", ["u8u8", "u8s8"])
def test_integer_types_are_an_onnxruntime_setting_refused_elsewhere_with_the_reason(types):
    from edgepipe.quantize.recipes import BUILTIN, problems

    assert problems(BUILTIN[types], "onnxruntime") == []
    for quantizer, why in (("tflite", "int8 weights and activations"), ("edgetpu", "int8 weights and activations"),
                           ("nncf", "picks each activation's type from its sign")):
        found = problems(BUILTIN[types], quantizer)
        assert any(f"integer_types {types} is not available" in p and why in p for p in found), (quantizer, found)
    assert "integer_types" not in BUILTIN["no-saturation"].cache_params()  # older recipes keep their keys


def test_faithful_is_per_target_and_every_registered_target_can_build_its_choice():
    """`faithful` (and `faithful-qat`) name a built-in recipe per target (recipes.PER_TARGET); each registered
    target that quantizes gets one its own quantizer can build, so `faithful` on every target is a valid config."""
    from edgepipe import targets
    from edgepipe.quantize.recipes import PER_TARGET, per_target

    quantizer = {t: getattr(targets.load_module(t), "QUANTIZER", None) for t in sorted(targets.REGISTRY)}
    quantizing = [t for t, q in quantizer.items() if q]
    assert len(quantizing) >= 5
    for name in PER_TARGET:
        assert set(PER_TARGET[name]["targets"]) <= set(targets.REGISTRY)  # no stale target names
        for t in quantizing:
            chosen = per_target(name, t)
            recipe = resolve(name, target=t)
            assert recipe.cache_params() == BUILTIN[chosen].cache_params()  # the same artifacts and cache keys
            assert recipe.description == f"{name} for {t}: {chosen}"
            assert problems(recipe, quantizer[t]) == [], (name, t, chosen)
    assert resolve("faithful-qat", target="onnx-cpu").fine_tune_steps == 100
    assert resolve("faithful-qat", target="onnx-cpu").integer_types == "u8s8"
    onnx = resolve("faithful", target="onnx-cpu")
    assert onnx.integer_types == "u8s8" and onnx.equalize_separable
    assert resolve("faithful", target="openvino-cpu").weight_bits == 7
    c = parse_config(tiny_config({"model": "/m.keras", "data": "/d"}, "/o",
                                 targets=[{"name": t, "options": {"recipe": "faithful"}} for t in quantizing]))
    assert [c.recipe_for(e).cache_params() == BUILTIN[per_target("faithful", e.name)].cache_params()
            for e in c.targets] == [True] * len(quantizing)
    with pytest.raises(KeyError, match="depends on the target"):
        resolve("faithful")
    with pytest.raises(ConfigError, match=r"built-in recipes cannot be redefined\)\. Received: \['faithful'\]"):
        parse_config(tiny_config({"model": "/m.keras", "data": "/d"}, "/o",
                                 quantization={"recipes": {"faithful": {}}}))


def test_config_wide_calibration_size_reaches_every_quantizing_target_unless_its_recipe_sets_one():
    """`quantization.calibration_size` is applied where every target resolves its recipe (`resolve_recipe`, also
    used by coral-edgetpu and openvino-npu), walking the registry; a recipe's own size wins; unset = all images."""
    from edgepipe import targets

    quantizing = sorted(t for t in targets.REGISTRY if getattr(targets.load_module(t), "QUANTIZER", None))
    assert {"tflite-arm", "openvino-cpu", "onnx-cpu", "coral-edgetpu", "openvino-npu"} <= set(quantizing)
    raw = {"model": {"path": "m.keras"}, "input": {"size": [32, 32]},
           "data": {"labels": ["a", "b"], "calibration": {"source": "d", "split": "calibration"},
                    "validation": {"source": "d", "split": "test"}},
           "targets": [{"name": t, "options": {"recipe": "faithful"}} for t in quantizing],
           "quantization": {"calibration_size": 100, "recipes": {"own": {"calibration_size": 10}}}}
    cfg = parse_config(raw)
    for entry in cfg.targets:
        r = cfg.recipe_for(entry)
        assert r.calibration_size == 100 and cfg.resolve_recipe("faithful", entry.name) == r, entry.name
        assert r.cache_params()["calibration_size"] == 100  # a new stage key: another artifact
        assert cfg.resolve_recipe("own", entry.name).calibration_size == 10
    raw["quantization"] = {}
    unset = parse_config(raw)
    assert all(unset.recipe_for(e).calibration_size is None for e in unset.targets)
    raw["quantization"] = {"calibration_size": 0}
    with pytest.raises(ConfigError, match="calibration_size"):
        parse_config(raw)
