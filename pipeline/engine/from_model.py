"""A pipeline.yaml for your own model: what `edgepipe run MODEL --data DIR` and `edgepipe init MODEL` build.

Everything that can be read from the files is, and every choice is stated (one note each, for stderr):
the input size and channels from the model (the .keras archive's config.json or the SavedModel's
serving signature, read without loading the model: `edgepipe.formats`), the labels from the class
folders (sorted) or the CSV's label column, the targets this host can build (the registry's host
status), and the schema's defaults for the rest. The mapping goes through the same pydantic schema as
a file (`parse_config`), and `config_yaml` writes it back as a commented pipeline.yaml that is checked
to load to the same config, so `edgepipe run <output>/pipeline.yaml` repeats the run exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgepipe import __version__, formats, targets
from edgepipe.config.render import render
from edgepipe.config.schema import GateSpec, LatencySpec, PipelineConfig, SplitSpec, parse_config
from edgepipe.core.errors import ConfigError, InputError, expected_received
from edgepipe.formats.inspect import describe, sniff

CONFIG_SUFFIXES = (".yaml", ".yml")
MODEL_SUFFIXES = (".keras", ".h5")
PRECISIONS = ("int8", "fp32")
GATE_COMMENTS = {"max_top1_drop": "points of top-1 an artifact may lose vs the FP32 model",
                 "max_p90_ms": "p90 latency in ms (null: no latency gate)",
                 "parity_min_cosine": "FP32 artifacts vs the model: worst image's cosine (null: off)",
                 "parity_max_abs": "... and largest absolute score difference",
                 "cross_quantizer_max_gap": "points an INT8 artifact may fall below the other INT8s"}


def source_kind(path: Path) -> str:
    """'config' (a pipeline.yaml) or 'model' (.keras, SavedModel directory, legacy .h5): by the suffix
    when it says, else by the file's bytes (edgepipe.formats); anything else is an InputError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in CONFIG_SUFFIXES:
        return "config"
    if suffix in MODEL_SUFFIXES:
        return "model"
    kind = sniff(path)
    if kind in ("zip", "savedmodel", "hdf5"):
        return "model"
    if kind == "text":
        return "config"
    hint = ("; `edgepipe validate` and `edgepipe bench` take converted artifacts"
            if kind in {f.kind for f in formats.FORMATS if f.opens_files} else "")
    raise InputError(expected_received(f"CONFIG_OR_MODEL {str(path)!r}",
                                       "a pipeline.yaml, a .keras file or a SavedModel directory",
                                       describe(path) + hint))


@dataclass
class Plan:
    """The config mapping for a model, the comments for its YAML, and the notes to print."""

    raw: dict
    comments: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def note(self, key: str | None, text: str, comment: str | None = None) -> None:
        self.notes.append(text)
        if key:
            self.comments[key] = comment or text


def model_io(model: Path, trust: bool = False) -> tuple[tuple | None, int | None, str]:
    """(H, W, C), class count and where they were read, without loading the model where possible."""
    fmt = formats.for_path(model)
    if fmt is not None and fmt.name in ("keras", "savedmodel"):
        hwc, n = fmt.load().io_shapes(model)
        if hwc is not None:
            return hwc, n, ("the model's config.json" if fmt.name == "keras" else "the SavedModel's serving signature")
    from edgepipe.stages.keras_model import load_keras  # a config.json that does not say: load it (safe_mode)

    keras_model = load_keras(model, trust)
    return (tuple(keras_model.inputs[0].shape[1:]), int(keras_model.outputs[0].shape[-1]),
            "the loaded model (its config.json does not say)")


def _labels(plan: Plan, data: str, labels: Path | None, n_classes: int | None) -> list[str]:
    from edgepipe.core.labels import brief, labels_problem, read_labels

    if labels is not None:
        found = read_labels(labels)
        plan.raw["data"]["labels"] = str(Path(labels).resolve())
        plan.note("data.labels", f"labels: {len(found)} classes from {labels}", "one class per line, in output order")
    else:
        src = Path(data)
        if src.is_dir():
            found = sorted(p.name for p in src.iterdir() if p.is_dir())
            where = f"the class folders of {data}, sorted"
        elif src.is_file() and src.suffix.lower() == ".csv":
            from edgepipe.calibration.sources import csv_rows

            # the reader every CSV source goes through: within limits, UTF-8 (BOM or not) or refused by line
            found = sorted({lab for _, _, lab in csv_rows(src)} - {""})
            where = f"the label column of {data}, sorted"
        else:
            raise InputError(expected_received("--data", "a folder of class sub-folders or a CSV with columns "
                                               "path,label", f"{data!r} ({describe(src)})"))
        if len(found) < 2:
            raise InputError(expected_received(f"--data {data!r}", "labeled images of at least 2 classes (class "
                                               "sub-folders or a CSV label column), or --labels FILE",
                                               f"{len(found)} classes {brief(found)}"))
        problem = labels_problem(found)  # a folder name becomes a line of labels.txt
        if problem:
            raise InputError(f"--data {data!r}, class labels ({where}): {problem}; rename them or pass --labels FILE")
        plan.raw["data"]["labels"] = found
        plan.note("data.labels", f"labels: {brief(found)} ({where}; pass --labels FILE if the model's class order "
                                 "differs)", f"from {where}; must be the model's output order")
    if n_classes is not None and n_classes != len(found):
        raise InputError(expected_received("labels", f"{n_classes} classes, one per model output",
                                           f"{len(found)} labels {brief(found)}; pass --labels FILE"))
    return found


def _data(plan: Plan, data: str, labels: list[str]) -> None:
    import numpy as np

    from edgepipe.calibration.sources import open_source
    from edgepipe.calibration.splits import stratified_split

    source = data if data.startswith("example:") else str(Path(data).resolve())
    plan.raw["data"].update(splits=SplitSpec().model_dump(), calibration={"source": source, "split": "calibration"},
                            validation={"source": source, "split": "test"})
    records = open_source(source, labels)  # lists the files, decodes nothing
    s = SplitSpec()
    split = stratified_split(np.array([r.label for r in records]), s.seed, s.calibration, s.test_fraction)
    n_test, n_cal = len(split["test"]), len(split["calibration"])
    plan.note("data.splits", f"data: {len(records)} images in {data}: a stratified split (seed {s.seed}) validates "
              f"on {n_test} ({s.test_fraction:.0%} per class) and calibrates on {n_cal} (up to {s.calibration}) others",
              "deterministic, stratified; test validates, calibration calibrates")


def _targets(plan: Plan, names: list[str] | None, precision: str | None) -> None:
    chosen = names
    if chosen is None:
        chosen = [t.name for t in targets.REGISTRY.values() if t.host_status()["available"]]
        others = [n for n in targets.REGISTRY if n not in chosen]
        plan.notes.append(f"targets: {', '.join(chosen)} (what this host can build"
                          + (f"; {', '.join(others)}: not available here" if others else "")
                          + "; --targets a,b to choose, `edgepipe targets` lists them)")
    entries = []
    for name in chosen:
        if name not in targets.REGISTRY:
            raise ConfigError(expected_received("--targets", f"names from {sorted(targets.REGISTRY)}", repr(name)))
        info = targets.get(name)
        entry: dict = {"name": name}
        if precision is not None:
            if precision not in info.precisions:
                if names is not None:
                    raise ConfigError(expected_received(f"--{precision} for target {name!r}",
                                                        f"a precision it builds {list(info.precisions)}",
                                                        f"--{precision}"))
                continue
            if len(info.precisions) > 1:
                entry["options"] = {"precisions": [precision]}
        plan.comments[f"targets.{len(entries)}"] = info.description
        entries.append(entry)
    if not entries:
        raise ConfigError(expected_received("targets", f"at least one that builds {precision}", "none"))
    plan.raw["targets"] = entries
    if precision is not None:
        plan.notes.append(f"precision: {precision} artifacts only (--{precision})")


def plan_for_model(model: Path, data: str | None, *, target_names: list[str] | None = None,
                   labels: Path | None = None, precision: str | None = None, preprocessing: str | None = None,
                   output: Path | None = None, threads: int | None = None, executor: str | None = None,
                   trust: bool = False, for_file: bool = False) -> Plan:
    """The config mapping for `model` and the images in `data` (None: placeholders to fill in). `for_file`
    (`edgepipe init`): the default output folder is written relative to the pipeline.yaml."""
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(expected_received("precision", f"one of {list(PRECISIONS)}", repr(precision)))
    model = Path(model).resolve()
    plan = Plan({"model": {"path": str(model), **({"trust": True} if trust else {})}, "input": {}, "data": {}})
    plan.comments["model.path"] = "a .keras file or a SavedModel directory"
    hwc, n_classes, where = model_io(model, trust)
    if len(hwc) != 3 or not all(isinstance(d, int) and d > 0 for d in hwc) or hwc[2] not in (1, 3):
        raise InputError(expected_received(f"model {str(model)!r}", "a fixed input size (H, W, C) with C 1 or 3 "
                                           "(or write input.size in a pipeline.yaml: edgepipe init)", f"{hwc}"))
    h, w, c = hwc
    plan.raw["input"].update(size=[h, w], channels=c)
    plan.note("input.size", f"input: {h}x{w}, {c} channel(s), from {where}", f"from {where}")
    mode = preprocessing
    if mode is None:
        fmt = formats.for_path(model)
        rescales = fmt is not None and fmt.name == "keras" and fmt.load().rescales_input(model)
        mode = "raw" if rescales else "xception"
        why = ("the model rescales its own input (a Rescaling layer): pixels go in as 0..255" if rescales else
               "pixels scaled to [-1, 1] as Xception expects")
        plan.note("input.preprocessing", f"preprocessing: {mode} ({why}; --preprocessing xception | unit | "
                  "imagenet | raw to change it)", f"{why}; or unit | imagenet | raw")
    plan.raw["input"].update(preprocessing=mode, color="rgb" if c == 3 else "grayscale")
    if data is None:
        plan.raw["data"]["labels"] = [f"class_{i}" for i in range(n_classes or 2)]
        plan.comments["data.labels"] = ("TODO: your class names, in output order (or a labels file)" if n_classes
                                        else "TODO: your class names (the model's class count was not readable)")
        source = "images"
        plan.raw["data"].update(splits=SplitSpec().model_dump(), calibration={"source": source, "split": "calibration"},
                                validation={"source": source, "split": "test"})
        plan.comments["data.calibration"] = "TODO: a folder of class sub-folders, or a CSV path,label"
    else:
        found = _labels(plan, data, labels, n_classes)
        _data(plan, data, found)
    _targets(plan, target_names, precision)
    plan.raw["gates"] = GateSpec().model_dump()
    plan.comments.update({f"gates.{k}": v for k, v in GATE_COMMENTS.items()})
    plan.raw["latency"] = LatencySpec().model_dump(exclude={"thread_sweep"})
    plan.comments["latency.runs"] = "timed single-image runs per artifact (at least 50)"
    if output is None and for_file:  # `edgepipe init`: beside the file it writes
        plan.raw["output"] = "edgepipe-out"
        plan.comments["output"] = "artifacts, report.json, report.html, stage cache (relative: to this file)"
    else:
        # absolute, but not resolved: a symbolic link stays a link, so the output check sees it (a dangling
        # `-o out -> /elsewhere` was resolved here and a folder created at its target)
        plan.raw["output"] = os.path.abspath(os.path.expanduser(str(output or "edgepipe-out")))
        plan.note("output", f"output: {plan.raw['output']}", "artifacts, report.json, report.html, stage cache")
    if threads is not None:
        plan.raw["threads"] = threads
    if executor is not None:
        plan.raw["executor"] = executor
    return plan


def build_config(plan: Plan, base: Path | None = None) -> PipelineConfig:
    return parse_config(plan.raw, base=base, source="command line")


def config_yaml(plan: Plan, cfg: PipelineConfig, how: str, dest: Path) -> str:
    """The plan as a commented pipeline.yaml for `dest`, checked to load back to `cfg` (relative paths in it
    resolve against `dest`'s folder, as `load_config` resolves them)."""
    import yaml

    header = [f"pipeline.yaml for {Path(cfg.model.path).name}, written by `{how}` (edgepipe {__version__}).",
              "`edgepipe run THIS_FILE` runs it; every key: pipeline/config/README.md, or `edgepipe schema`."]
    text = render(plan.raw, plan.comments, header)
    again = parse_config(yaml.safe_load(text), base=Path(dest).parent.resolve(), source=str(dest))
    if again != cfg:  # a bug here, never the user's: refuse to write a file that would run something else
        raise ConfigError(f"{dest}: expected the written config to load as the one run. Received: a difference")
    return text
