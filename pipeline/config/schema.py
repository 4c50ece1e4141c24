"""pipeline.yaml: a strict schema (unknown keys rejected), loaded once, never rewritten.

Relative paths in a config file are resolved against the file's own directory: every path field is
typed `ConfigPath` / `SourcePath` (pipeline/config/paths.py), so none can be forgotten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edgepipe.config.paths import ConfigPath, SourcePath
from edgepipe.core.bounds import CalibrationImages, Images, InputSide, Runs, Seed, Threads, Warmup
from edgepipe.core.errors import ConfigError
from edgepipe.quantize.recipes import BUILTIN as BUILTIN_RECIPES
from edgepipe.quantize.recipes import PER_TARGET as PER_TARGET_RECIPES
from edgepipe.quantize.recipes import Recipe

EXAMPLE_MODELS = ("elpv-xception", "kitchenware-xception")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Strict):
    """Exactly one of: a built-in example name, or a path to a .keras file or a SavedModel directory."""

    example: Literal["elpv-xception", "kitchenware-xception"] | None = None
    path: ConfigPath | None = None
    trust: bool = Field(False, description="allow Keras models that need safe_mode=False (Lambda layers)")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.example is None) == (self.path is None):
            raise ValueError(
                "expected exactly one of 'example' or 'path'. "
                f"Received: example={self.example!r}, path={self.path!r}"
            )
        return self


class InputSpec(Strict):
    size: tuple[InputSide, InputSide] = Field((299, 299), description="height, width (at most 2048 each)")
    channels: Literal[1, 3] = 3
    preprocessing: Literal["xception", "unit", "imagenet", "raw"] = "xception"
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    color: Literal["rgb", "grayscale_to_rgb", "grayscale"] = "rgb"

    @field_validator("size")
    @classmethod
    def _min_size(cls, v):
        if min(v) < 32:
            raise ValueError(f"expected height and width >= 32. Received: {list(v)}")
        return v


class SplitSpec(Strict):
    seed: Seed = 0
    calibration: CalibrationImages = 300
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3


class Subset(Strict):
    source: SourcePath = Field(description="'example:elpv', 'example:kitchenware', a class-folder dir or a CSV file")
    split: Literal["train", "calibration", "test", "all"]
    size: Images | None = Field(None, description="use at most this many images (deterministic)")


class DataSpec(Strict):
    calibration: Subset
    validation: Subset
    accuracy_control: Subset | None = Field(
        None, description="labeled images a max_accuracy_drop recipe measures its drop on "
                          "(default: the labeled calibration images); never the validation subset")
    splits: SplitSpec = SplitSpec()
    labels: list[str] | ConfigPath
    min_calibration: CalibrationImages = 100

    @model_validator(mode="after")
    def _control_is_held_out(self):
        c, v = self.accuracy_control, self.validation
        if c is not None and c.source == v.source and (c.split == v.split or "all" in (c.split, v.split)):
            raise ValueError("data.accuracy_control: expected images held out from the validation data the "
                             f"artifacts are scored on. Received: split {c.split!r} of {c.source!r}, which "
                             f"overlaps validation split {v.split!r}")
        return self

    @field_validator("labels")
    @classmethod
    def _labels_ok(cls, v):
        if isinstance(v, list):
            from edgepipe.core.labels import labels_problem

            problem = labels_problem(v)  # the rule a labels file follows too (pipeline/core/labels.py)
            if problem:
                raise ValueError(problem)
        return v


class GateSpec(Strict):
    max_top1_drop: Annotated[float, Field(ge=0)] | None = Field(1.0, description="points of top-1 vs FP32")
    max_p90_ms: Annotated[float, Field(gt=0)] | None = None
    # fidelity of quantized artifacts to the FP32 reference (pipeline/validators/fidelity.py)
    min_agreement: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None, description="share of images whose top-1 equals the FP32 top-1; None: no gate")
    min_output_snr_db: Annotated[float, Field(ge=-100, le=200)] | None = Field(
        None, description="output SNR vs FP32 in dB; None: no gate")
    # output parity of float artifacts with the FP32 reference (worst image's cosine, largest |diff|)
    parity_min_cosine: Annotated[float, Field(gt=0, le=1)] | None = Field(0.999, description="None: no parity gate")
    parity_max_abs: Annotated[float, Field(gt=0)] = 1e-3
    cross_quantizer_max_gap: Annotated[float, Field(ge=0)] | None = Field(
        5.0, description="an INT8 artifact whose top-1 is more than this many points below the median of the "
                         "other INT8 artifacts fails (a broken quantizer); None = off")


class LatencySpec(Strict):
    warmup: Warmup = 5
    runs: Annotated[Runs, Field(ge=50)] = 50
    thread_sweep: Annotated[list[Threads], Field(max_length=16)] | None = Field(
        None, description="also measure at these thread counts")
    end_to_end: bool = Field(True, description="also time decode + preprocess + inference from the image file")


class TargetEntry(Strict):
    """`name` picks a target from the registry; `options` are validated by that target."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    required: bool = Field(False, description="when this host cannot finish the target (no compiler, device or "
                                              "package: `not available here`), the run exits 3 instead of 0")

    @field_validator("name")
    @classmethod
    def _known(cls, v):
        from edgepipe import targets

        if v not in targets.REGISTRY:
            raise ValueError(f"expected one of {sorted(targets.REGISTRY)}. Received: {v!r}")
        return v

    @model_validator(mode="after")
    def _options(self):
        from edgepipe import targets

        opts_cls = targets.load_module(self.name).Options
        try:
            opts = opts_cls.model_validate(self.options)
        except ValidationError as err:
            raise ValueError(f"options for target {self.name!r}: "
                             + format_validation_error(err, prefix="options")) from None
        object.__setattr__(self, "options", opts.model_dump())
        return self

    def typed_options(self):
        from edgepipe import targets

        return targets.load_module(self.name).Options.model_validate(self.options)

    def quantizer(self) -> str | None:
        """The quantizer behind this target (module constant QUANTIZER), if it quantizes."""
        from edgepipe import targets

        return getattr(targets.load_module(self.name), "QUANTIZER", None)


class DiagnosticsSpec(Strict):
    per_layer_images: Annotated[int, Field(ge=0, le=1000)] = Field(
        16, description="validation images for the per-layer INT8 error report (0 = no report)")


class QuantizationSpec(Strict):
    """User-defined quantization recipes (same schema as the built-in ones, `edgepipe recipes`)."""

    recipes: dict[str, Recipe] = Field(default_factory=dict)
    calibration_size: CalibrationImages | None = Field(
        None, description="calibration images every recipe uses unless it sets its own `calibration_size`: a "
                          "deterministic subset of the calibration data (None = all of it)")

    @field_validator("recipes")
    @classmethod
    def _no_shadowing(cls, v):
        clash = sorted(set(v) & (set(BUILTIN_RECIPES) | set(PER_TARGET_RECIPES)))
        if clash:
            raise ValueError(f"expected new recipe names (built-in recipes cannot be redefined). Received: {clash}")
        return v


class ProbeSpec(Strict):
    """Each artifact is loaded and first-run in a child process with these limits before the run uses it."""

    timeout_s: Annotated[float, Field(gt=0, le=86400)] = 120.0
    memory_mb: Annotated[int, Field(ge=256, le=1 << 22)] = 8192


def _valid_executor(v: str) -> str:
    from edgepipe.executors.base import parse_spec

    try:
        parse_spec(v)
    except ConfigError as err:
        raise ValueError(str(err).removeprefix("executor: ")) from None
    return v


ExecutorSpec = Annotated[str, AfterValidator(_valid_executor)]  # shared with sweep.yaml


class PipelineConfig(Strict):
    model: ModelSpec
    input: InputSpec = InputSpec()
    data: DataSpec
    targets: list[TargetEntry] = Field(min_length=1)
    quantization: QuantizationSpec = QuantizationSpec()
    diagnostics: DiagnosticsSpec = DiagnosticsSpec()
    gates: GateSpec = GateSpec()
    latency: LatencySpec = LatencySpec()
    probe: ProbeSpec = ProbeSpec()
    output: ConfigPath = Path("edgepipe-out")
    threads: Threads = 2
    executor: ExecutorSpec = Field("local", description="local | process[=N] | ray[=ADDRESS] (pipeline/executors)")

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, v):
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"expected each target once. Received duplicates: {dup}")
        return v

    @model_validator(mode="after")
    def _recipes_possible(self):
        """Each target's recipe exists and its quantizer can build it (else: say why)."""
        from edgepipe.quantize.recipes import problems

        for i, entry in enumerate(self.targets):
            name = entry.options.get("recipe")
            if name is None:
                continue
            try:
                recipe = self.recipe_for(entry)
            except KeyError as err:
                raise ValueError(f"targets[{i}] ({entry.name}) options.recipe: {err.args[0]}") from None
            quantizer = entry.quantizer()
            bad = problems(recipe, quantizer) if quantizer else []
            if bad:
                raise ValueError(f"targets[{i}] ({entry.name}) options.recipe {name!r} is impossible for the "
                                 f"{quantizer} quantizer: " + "; ".join(bad))
        return self

    def recipe_for(self, entry: TargetEntry) -> Recipe:
        return self.resolve_recipe(entry.options.get("recipe", "default"), entry.name)

    def resolve_recipe(self, name: str, target: str) -> Recipe:
        """Recipe `name` for `target` (the config's recipes, then the built-in ones), with the config-wide
        `quantization.calibration_size` unless the recipe sets its own."""
        from edgepipe.quantize.recipes import resolve

        recipe = resolve(name, self.quantization.recipes, target)
        n = self.quantization.calibration_size
        if n is not None and recipe.calibration_size is None:  # the config-wide size, unless the recipe sets one
            recipe = recipe.model_copy(update={"calibration_size": n})
        return recipe


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    from edgepipe.config.yamlfile import bounded

    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(e["loc"]))
        if not loc and e["type"] == "value_error":  # a whole-config check: its message names the keys
            lines.append(e["msg"].removeprefix("Value error, "))
            continue
        loc = loc or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key (not part of the schema). Received: {bounded(e['input'])}")
        elif e["type"] == "missing":
            lines.append(f"{loc}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if "Received" in msg:
                lines.append(f"{loc}: {msg}")
            else:
                lines.append(f"{loc}: {msg}. Received: {bounded(e.get('input'))}")
        if len(lines) >= 10:
            lines.append(f"... ({len(err.errors()) - 10} more)")
            break
    return "; ".join(lines)


def parse_config(raw: Any, base: Path | None = None, source: str = "config") -> PipelineConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level. Received: {type(raw).__name__}")
    try:  # relative path fields resolve against `base` (edgepipe.config.paths)
        return PipelineConfig.model_validate(raw, context={"base": base})
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err)}") from err


def load_config(path: str | Path) -> PipelineConfig:
    from edgepipe.config.yamlfile import load_yaml

    path = Path(path)
    raw = load_yaml(path, "config file")
    return parse_config(raw, base=path.parent.resolve(), source=str(path))


def example_config_path(name: str) -> Path:
    p = Path(__file__).parents[1] / "examples" / f"{name}.yaml"
    if not p.is_file():
        raise ConfigError(f"example: expected one of {list(EXAMPLE_MODELS)}. Received: {name!r}")
    return p
