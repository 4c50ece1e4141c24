"""sweep.yaml: a matrix of models x recipes x targets (x boards) over one base pipeline config.

A recipe is a set of target-option overrides: `options` merge into every target's options,
`targets: {NAME: {...}}` into one target's. Every cell is validated as a full pipeline
config when the sweep is loaded, so a typo in a recipe fails before anything runs, naming
the cell. Strict schema, like pipeline.yaml.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgepipe.config.paths import ConfigPath, SourcePath
from edgepipe.config.schema import (
    ExecutorSpec,
    PipelineConfig,
    example_config_path,
    format_validation_error,
    load_config,
    parse_config,
)
from edgepipe.core.bounds import Threads
from edgepipe.core.errors import ConfigError, expected_received

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # safe as a directory name
MAX_CELLS = 1000  # models x recipes x targets of one sweep file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepModel(_Strict):
    name: str | None = Field(None, pattern=NAME)
    path: ConfigPath | None = None
    example: str | None = None
    trust: bool = False

    @model_validator(mode="after")
    def _one(self):
        if (self.path is None) == (self.example is None):
            raise ValueError(f"expected exactly one of 'path' or 'example'. Received: path={self.path!r}, "
                             f"example={self.example!r}")
        return self

    @property
    def label(self) -> str:
        return self.name or (self.example if self.example else Path(self.path).stem)

    def as_model_spec(self) -> dict:
        spec = {"path": str(self.path)} if self.path is not None else {"example": self.example}
        return {**spec, "trust": self.trust}


class SweepRecipe(_Strict):
    name: str = Field(pattern=NAME)
    options: dict[str, Any] = Field(default_factory=dict, description="merged into every target's options")
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-target option overrides")


class SweepTarget(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class SweepBoard(_Strict):
    """A device registered for benchmarks: one Ray custom resource `board:NAME` of capacity 1."""

    name: str = Field(pattern=NAME)
    url: str = Field(description="how the bench function reaches it, e.g. ssh://pi@rpi4-01")
    tags: list[str] = Field(default_factory=list)
    targets: list[str] | None = Field(None, description="targets whose artifacts run on it (default: all)")

    @property
    def resource(self) -> str:
        return f"board:{self.name}"


class SweepSpec(_Strict):
    base: SourcePath | dict[str, Any] = Field(description="pipeline.yaml path, 'example:NAME', or an inline mapping")
    models: list[SweepModel] | None = None
    recipes: list[SweepRecipe] = Field(default_factory=lambda: [SweepRecipe(name="default")], min_length=1)
    targets: list[str | SweepTarget] | None = None
    gates: dict[str, Any] | None = None
    boards: list[SweepBoard] = Field(default_factory=list)
    board_bench: str | None = Field(None, pattern=r"^[\w.]+:\w+$", description="module:function")
    output: ConfigPath = Path("sweep-out")
    executor: ExecutorSpec = "local"
    threads: Threads | None = None
    max_retries: int = Field(2, ge=0, le=10)

    @model_validator(mode="after")
    def _unique_and_bench(self):
        for what, names in (("recipes", [r.name for r in self.recipes]), ("boards", [b.name for b in self.boards])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what}: expected unique names. Received duplicates: {dup}")
        if self.boards and not self.board_bench:
            raise ValueError("boards: expected 'board_bench: module:function' (the function that benchmarks an "
                             "artifact on a board) when boards are listed. Received: no board_bench")
        return self


@dataclass(frozen=True)
class Cell:
    model: str
    recipe: str
    target: str
    config: PipelineConfig  # a complete, validated pipeline config with exactly this one target

    @property
    def id(self) -> str:
        return f"{self.model}/{self.recipe}/{self.target}"


@dataclass(frozen=True)
class Sweep:
    spec: SweepSpec
    base: PipelineConfig
    cells: list[Cell]
    source: str

    @property
    def output(self) -> Path:
        return Path(self.spec.output)


def load_sweep(path: str | Path, overrides: dict | None = None) -> Sweep:
    """`overrides`: top-level keys from the command line (e.g. output, executor)."""
    from edgepipe.config.yamlfile import load_yaml

    path = Path(path)
    raw = load_yaml(path, "sweep file")
    if isinstance(raw, dict) and overrides:
        raw = {**raw, **{k: str(Path(v).resolve()) if k == "output" else v for k, v in overrides.items()}}
    return parse_sweep(raw, base_dir=path.parent.resolve(), source=str(path))


def parse_sweep(raw: Any, base_dir: Path, source: str = "sweep") -> Sweep:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level. Received: {type(raw).__name__}")
    try:  # relative path fields resolve against `base_dir` (edgepipe.config.paths)
        spec = SweepSpec.model_validate(raw, context={"base": base_dir})
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err)}") from err
    base = _load_base(spec.base, base_dir, source)
    cells = expand(spec, base, source)
    names = sorted({c.target for c in cells})
    for b in spec.boards:
        unknown = sorted(set(b.targets or ()) - set(names))
        if unknown:
            raise ConfigError(f"{source}: boards.{b.name}.targets: expected target names of this sweep {names}. "
                              f"Received: {unknown}")
    if spec.board_bench:
        _check_board_bench(spec.board_bench, spec.executor, source)
    return Sweep(spec, base, cells, source)


def _check_board_bench(ref: str, executor: str, source: str) -> None:
    """`board_bench: module:function` imports here, before any cell runs (the import the board tasks would do
    after every cell was built). Not on an existing Ray cluster (`ray=ADDRESS`): there the module need only be
    installed on the nodes that own boards (pipeline/sweeps/README.md), not on the machine running edgepipe."""
    if executor.startswith("ray="):
        return
    from edgepipe.executors.board_resources import load_bench

    try:
        load_bench(ref)  # ImportError / AttributeError / not callable: a ConfigError naming module:function
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except Exception as err:  # the module itself fails to import (SyntaxError, an error in its top-level code)
        raise ConfigError(f"{source}: board_bench: expected an importable 'module:function'. Received: {ref!r} "
                          f"(importing it raised {type(err).__name__}: {str(err)[:300]})") from None


def _load_base(base, base_dir: Path, source: str) -> PipelineConfig:
    if isinstance(base, dict):
        return parse_config(base, base=base_dir, source=f"{source}: base")
    if base.startswith("example:"):
        return load_config(example_config_path(base.removeprefix("example:")))
    return load_config(base)


def expand(spec: SweepSpec, base: PipelineConfig, source: str = "sweep") -> list[Cell]:
    """Every (model, recipe, target) cell as a validated one-target pipeline config."""
    base_raw = base.model_dump(mode="json")
    base_opts = {t["name"]: t["options"] for t in base_raw["targets"]}
    targets = [t if isinstance(t, SweepTarget) else SweepTarget(name=t) for t in spec.targets] \
        if spec.targets is not None else [SweepTarget(name=n) for n in base_opts]
    names = [t.name for t in targets]
    for r in spec.recipes:
        unknown = sorted(set(r.targets) - set(names))
        if unknown:
            raise ConfigError(f"{source}: recipes.{r.name}.targets: expected target names of this sweep "
                              f"{names}. Received: {unknown}")
    models = spec.models or [None]
    count = len(models) * len(spec.recipes) * len(targets)
    if count > MAX_CELLS:  # each cell is a whole pipeline run: minutes to an hour of a worker
        raise ConfigError(expected_received(
            f"{source}: models x recipes x targets", f"at most {MAX_CELLS} cells (each is a whole pipeline run; "
                                                     "split the sweep into several files)",
            f"{len(models)} x {len(spec.recipes)} x {len(targets)} = {count} cells"))
    cells = []
    for m in models:
        model_label = m.label if m is not None else _base_model_label(base)
        for r in spec.recipes:
            for t in targets:
                raw = dict(base_raw)
                if m is not None:
                    raw["model"] = m.as_model_spec()
                options = {**base_opts.get(t.name, {}), **t.options, **r.options, **r.targets.get(t.name, {})}
                raw["targets"] = [{"name": t.name, "options": options}]
                if spec.gates is not None:
                    raw["gates"] = {**raw["gates"], **spec.gates}
                if spec.threads is not None:
                    raw["threads"] = spec.threads
                raw["executor"] = "local"  # a cell runs in its worker
                raw["output"] = str(Path(spec.output) / "cells" / model_label / r.name / t.name)
                cell_id = f"{model_label}/{r.name}/{t.name}"
                cells.append(Cell(model_label, r.name, t.name, parse_config(raw, source=f"{source}: cell {cell_id}")))
    dup = sorted(i for i, n in Counter(c.id for c in cells).items() if n > 1)
    if dup:
        raise ConfigError(f"{source}: expected unique cells (give models distinct names). "
                          f"Received duplicates: {dup}")
    return cells


def _base_model_label(base: PipelineConfig) -> str:
    return base.model.example or Path(base.model.path).stem
