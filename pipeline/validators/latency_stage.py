"""The cached latency stage of a run (what is measured where, and its cache key), and
`LatencyValidator`, the registry's entry that runs it for each artifact and adds the p50's roofline share
(`roofline.record`, from the MACs the stage counted; not cached: it reads this host's peak)."""

from __future__ import annotations

from pathlib import Path

from edgepipe.core.artifacts import Artifact
from edgepipe.core.progress import bar
from edgepipe.core.versions import cpu_model
from edgepipe.validators import latency as lat_mod
from edgepipe.validators import roofline
from edgepipe.validators.base import ValidationInputs, ValidatorResult


def latency_stage(ctx, name: str, key: dict, runner_factory, art: Artifact | None = None,
                  runner_params: dict | None = None) -> dict:
    """Cached latency. A deployment artifact whose format edgepipe can open is measured in a
    child process (clean peak RSS); the reference (and any other runner) in this process."""
    from edgepipe.formats.runners import RUNNERS

    lat = ctx.cfg.latency
    valid = ctx.validation
    sweep = sorted(set(lat.thread_sweep or ()))
    params = {**key, "threads": ctx.cfg.threads, "warmup": lat.warmup, "runs": lat.runs,
              "cpu": cpu_model(), "data": valid.sha256, "protocol": lat_mod.PROTOCOL,
              "end_to_end": lat.end_to_end, "thread_sweep": sweep if art is not None else None}
    paths = list(valid.paths) if lat.end_to_end else None
    e2e = lat.runs if paths else 0

    def fn(out: Path) -> dict:
        res = timed()
        if art is not None:  # the work per image, for the roofline share (`LatencyValidator`)
            res["macs_per_image"], why_not = roofline.count_macs(art.path)
            if why_not:
                res["macs_note"] = why_not
        return res

    def timed() -> dict:
        if art is None or art.format not in RUNNERS:
            with bar(f"{name}: {lat.runs} timed + {e2e} end-to-end runs", lat.runs + e2e, ctx.console) as adv:
                res = lat_mod.measure(runner_factory, valid.images, lat.warmup, lat.runs, adv, ctx.spec, paths)
            return {**res, "threads": ctx.cfg.threads}
        from edgepipe.validators.latency_child import measure_in_child

        def child(threads, with_e2e, advance):
            return measure_in_child(art.format, art.path, threads, valid.images, lat.warmup, lat.runs,
                                    runner_params, ctx.spec if with_e2e else None, paths if with_e2e else None,
                                    e2e, advance, artifact=art.to_json(), target=art.target)

        with bar(f"{name}: {lat.runs} timed + {e2e} end-to-end runs", lat.runs + e2e, ctx.console) as adv:
            res = child(ctx.cfg.threads, True, adv)
        if sweep:
            res["thread_sweep"] = []
            with bar(f"{name}: thread sweep {sweep}", lat.runs * len(sweep), ctx.console) as adv:
                for t in sweep:
                    r = child(t, False, adv)
                    res["thread_sweep"].append({"threads": t, **{k: r[k] for k in lat_mod.SWEEP_KEYS},
                                                "load": r.get("load")})
        return res

    # a cached entry without the figures the gates read (a damaged marker) is measured again, never passed unjudged
    return ctx.stage(name, params, fn, required=("p50_ms", "p90_ms")).meta


class LatencyValidator:
    """Steady-state and end-to-end latency, in a child process (the `latency-<artifact>` stage).
    A job that cannot be timed on this host (`job.latency_skip`, e.g. no Edge TPU) is partial."""

    name = "latency"
    diagnostic = False

    def applies(self, inputs: ValidationInputs) -> bool:
        return True

    def run(self, inputs: ValidationInputs) -> ValidatorResult:
        job, art = inputs.job, inputs.artifact
        skip = job.latency_skip(art) if job.latency_skip else None
        if skip:
            return ValidatorResult(self.name, {"skipped": skip}, partial=[skip])
        lat = latency_stage(inputs.ctx, inputs.stage_name("latency"), inputs.key, inputs.runner, art,
                            job.runner_params)
        if lat.get("macs_per_image"):  # counted by the stage (a result cached before it was simply lacks it)
            roof = roofline.record(lat["p50_ms"], lat["macs_per_image"], art.precision, lat.get("threads") or 1,
                                   fmt=art.format)
            if roof is not None:
                lat = {**lat, "roofline": roof}
        return ValidatorResult(self.name, lat, lat_mod.gate(inputs.gates, lat))
