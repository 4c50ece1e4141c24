"""Validate before writing: every input of a run or a sweep is checked before its output folder, the
folder's lock, or any sweep of leftovers is touched, so a refused run leaves the file system exactly
as it found it.

Checked, in order, reading only: the model (a regular .keras file or a SavedModel directory of
regular files; an untrusted SavedModel's ops, see formats.savedmodel_ops), the labels, every data
source (listed; every image a regular file; nothing decoded, so a warm run still loads no image),
and the output folder itself (`edgepipe.engine.outdir.check_output_dir`: not `/`, not $HOME, apart from
every input, new or empty or an earlier edgepipe run's). What can only be found by decoding (a
corrupt image) or by running (a reference at chance) is still a clean exit-2 error later, and then
the output folder is one edgepipe created.
"""

from __future__ import annotations

from pathlib import Path

from edgepipe.calibration.sources import EXAMPLES, check_source
from edgepipe.core.labels import read_labels
from edgepipe.engine.context import check_model_input
from edgepipe.engine.outdir import check_output_dir


def data_inputs(cfg, labels: list[str]) -> dict[str, Path | None]:
    """Check every data subset's source; returns what they are called -> their paths (for overlap checks)."""
    out: dict[str, Path | None] = {}
    seen: set[str] = set()
    subsets = {"calibration data": cfg.data.calibration, "validation data": cfg.data.validation,
               "accuracy-control data": cfg.data.accuracy_control}
    for what, subset in subsets.items():
        if subset is None:
            continue
        if subset.source not in seen:
            check_source(subset.source, labels, what)
            seen.add(subset.source)
        out[what] = None if subset.source in EXAMPLES else Path(subset.source)
    return out


def check_inputs(cfg, model_path: Path | None, output: Path | None = None) -> dict[str, Path | None]:
    """Model, labels and data of one pipeline config (model_path None: a built-in example built later).
    With `output`, also the output folder against these inputs. Returns the inputs by name."""
    labels = read_labels(cfg.data.labels)
    inputs: dict[str, Path | None] = {}
    if model_path is not None:
        check_model_input(Path(model_path), cfg.model.trust)
        inputs["model"] = Path(model_path)
    if not isinstance(cfg.data.labels, list):
        inputs["labels file"] = Path(cfg.data.labels)
    inputs.update(data_inputs(cfg, labels))
    if output is not None:
        check_output_dir(Path(output), inputs)
    return inputs


def check_run(ctx) -> None:
    """The rest of a run's checks once its RunContext exists (model and labels already checked)."""
    inputs: dict[str, Path | None] = {"model": ctx.model_path}
    if not isinstance(ctx.cfg.data.labels, list):
        inputs["labels file"] = Path(ctx.cfg.data.labels)
    inputs.update(data_inputs(ctx.cfg, ctx.labels))
    check_output_dir(Path(ctx.cfg.output), inputs)


def check_sweep_inputs(sweep) -> None:
    """Every distinct model, labels file and data source of a sweep's cells, then its output folder."""
    inputs: dict[str, Path | None] = {}
    done: set[tuple] = set()
    for cell in sweep.cells:
        cfg = cell.config
        key = (str(cfg.model.path), cfg.model.trust, str(cfg.data.labels), cfg.data.calibration.source,
               cfg.data.validation.source, getattr(cfg.data.accuracy_control, "source", None))
        if key in done:
            continue
        done.add(key)
        found = check_inputs(cfg, cfg.model.path)
        inputs.update({f"{k} of cell {cell.id}": v for k, v in found.items()})
    check_output_dir(Path(sweep.output), inputs)
