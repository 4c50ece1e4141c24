"""One target of a run: build each artifact, probe it, score it, validate it, publish it: one row each.

build -> probe -> scores (the cached `accuracy-*` stage) -> every validator of
`edgepipe.validators.registry.VALIDATORS` (each with its own gates) -> status -> publish -> `ReportRow`.
One failing artifact becomes a row with its reason; the others still run. Bad input (InputError,
ConfigError) aborts the run instead: nothing downstream of it can be trusted.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import numpy as np

from edgepipe import formats, targets
from edgepipe.core.artifacts import CARD_NAME, LABELS_NAME, PREPROCESS_NAME, Artifact
from edgepipe.core.errors import ConfigError, DeviceUnavailableError, EdgepipeError, InputError
from edgepipe.core.labels import check_outputs
from edgepipe.core.versions import host_facts, tool_versions
from edgepipe.engine.availability import host_gap, mark, unbuildable_row
from edgepipe.engine.context import RunContext
from edgepipe.engine.outdir import link_or_copy, owned_temp_dir, publish_dir, write_failure
from edgepipe.engine.probe import probed_stage
from edgepipe.engine.reference import scores_stage
from edgepipe.reports.model_card import write_model_card
from edgepipe.reports.rows import ReportRow
from edgepipe.validators import registry
from edgepipe.validators.base import ValidationInputs, validate


def publish(ctx: RunContext, art: Artifact, record_extra: dict) -> Path:
    final = Path(ctx.cfg.output) / "artifacts" / art.name.replace("/", "-")
    with owned_temp_dir(final) as tmp:  # never leave a half-written artifact directory
        for f in art.files:
            link_or_copy(art.path.parent / f, tmp / f)
        (tmp / LABELS_NAME).write_text("\n".join(ctx.labels) + "\n", encoding="utf-8")
        (tmp / PREPROCESS_NAME).write_text(json.dumps(ctx.spec.as_dict(), indent=2))
        published = Artifact.from_json({**art.to_json(), "path": str(final / art.path.name)})
        published.write(tmp, record_extra)
        write_model_card(tmp / CARD_NAME, ctx, published, record_extra, artifact_facts(art))
        publish_dir(tmp, final)
    return final


def artifact_facts(art: Artifact) -> dict:
    """What the model card reads from the artifact file itself: its first input tensor (with the int8
    scale and zero point). A file the reader cannot parse gets a card without it, and the reason."""
    fmt = formats.find(art.format)
    try:
        return {"input": fmt.input_tensor(art.path) if fmt else None}
    except Exception as err:  # a card fact, never a reason to lose the artifact
        return {"input": None, "input_error": f"{type(err).__name__}: {err}"}


def artifact_row(ctx: RunContext, job, ref_scores: np.ndarray) -> ReportRow:
    row = {"artifact": job.name, "target": job.target, "precision": job.precision, "reasons": []}
    try:
        art: Artifact = job.build()
        row.update(size_mb=art.size_bytes / 1e6, sha256=art.sha256, format=art.format)
        fmt_tools = tool_versions(*formats.runtime_packages(art.format))
        key = {"artifact": art.sha256, "runner": job.runner_params, **fmt_tools}
        probed_stage(ctx, art, job, key)  # structural check + load/first inference in a child process
        runner = lambda: job.runner(art, ctx.cfg.threads)  # noqa: E731
        scores, shared = shared_scores(ctx, job, art, key, runner)
        if shared:
            row["scores_shared_with"] = shared
        check_outputs(scores.shape[1], ctx.labels, f"{art.name} artifact")
        results = validate(registry.VALIDATORS, ValidationInputs(ctx, job, art, runner, key, scores, ref_scores))
        failed = [f for r in results for f in r.gate_failures]
        # what this host could not do (no compiler, no device): never a pass
        partial = list(art.incomplete) + [p for r in results for p in r.partial]
        status = "failed" if failed else ("partial" if partial else "passed")
        row.update(status=status, reasons=failed + partial)
        mark(row, host_gap(job.target) if status == "partial" else None)  # no compiler / device here: says so
        row.update(calibration_sha256=art.calibration_sha256, recipe=art.recipe, **{r.name: r.result for r in results})
        if art.metadata:
            row["target_info"] = art.metadata
        metrics = {r.name: r.result for r in results if not r.diagnostic}
        diagnostics = {r.name: r.result for r in results if r.diagnostic}
        finish = {k: row[k] for k in ("not_available_here", "how_to_finish") if k in row}
        row["dir"] = str(publish(ctx, art, {"metrics": metrics, "status": status, "gate_failures": failed,
                                            **finish, "environment": env_brief(), **diagnostics}))
    except (InputError, ConfigError):
        raise  # bad input aborts the run (exit 2): nothing downstream can be trusted
    except DeviceUnavailableError as err:  # built, but not validated where it must run: partial (exit 3)
        row.update(status="partial", reasons=[str(err)])
        mark(row, host_gap(job.target))
    except Exception as err:
        if (full := write_failure(err, Path(ctx.cfg.output))) is not None:
            raise full from err  # disk full / read-only: abort; earlier outputs stay as they were
        if isinstance(err, EdgepipeError):
            row.update(status="error", reasons=[str(err)])
        else:  # a toolchain failure for one artifact: a row, not an abort
            row.update(status="error", reasons=[f"{type(err).__name__}: {err}"],
                       traceback=traceback.format_exc(limit=8))
    return ReportRow(**row)


def shared_scores(ctx: RunContext, job, art: Artifact, key: dict, runner) -> tuple[np.ndarray, str | None]:
    """The artifact's scores on the validation images (a cached `accuracy-*` stage), and the artifact whose
    scores they are when the job runs another target's runner (`Job.scores_as`): the same file scored by the
    same interpreter gets the same stage name and key, so the run scores it once."""
    if job.scores_as is None:
        return scores_stage(ctx, f"accuracy-{art.name.replace('/', '-')}", key, runner)[0], None
    target, params = job.scores_as
    other = f"{target}/{job.precision}"
    scores, _ = scores_stage(ctx, f"accuracy-{other.replace('/', '-')}", {**key, "runner": params}, runner)
    return scores, other


def env_brief() -> dict:
    h = host_facts()
    return {k: h[k] for k in ("cpu", "isa_flags", "cores", "onednn_isa_cap") if k in h}


def run_target(ctx: RunContext, entry, ref_scores: np.ndarray) -> list[ReportRow]:
    """One target's artifacts: build, validate, gate, publish, then the target's extra check rows
    (e.g. arm64 emulation; a check takes the rows so far as JSON and returns one). The unit an
    executor fans out."""
    unbuildable = unbuildable_row(entry.name)  # its extra is not installed: nothing to build here
    if unbuildable is not None:
        return [unbuildable]
    rows = []
    mod = targets.load_module(entry.name)
    for job in mod.jobs(ctx, entry.typed_options()):
        ctx.console.print(f"[bold]{job.name}[/]")
        rows.append(artifact_row(ctx, job, ref_scores))
    for check in getattr(mod, "checks", lambda *_: [])(ctx, entry.typed_options()):
        rows.append(ReportRow.from_json(check([r.to_json() for r in rows])))
    return rows
