"""Model card per published artifact: README.md in the Hugging Face format, generated from the
measured results (nothing in it is typed by hand).

The YAML front matter (written with `yaml.safe_dump`) is what `huggingface_hub.ModelCard` parses:
`license`, `tags`, `pipeline_tag`, `model-index` with the measured metrics; then edgepipe's own keys
(model, target, precision, dataset, metrics with CIs, quantization with the recipe and the input
tensor's scale and zero point, runtime with its minimum version, environment with the machine's load
during the latency measurement, status, limits). The body is `templates/model_card.md.j2`: every value
is escaped for Markdown unless it is `Raw` (code the card generates itself).
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import yaml

from edgepipe import __version__
from edgepipe.reports import escape
from edgepipe.reports.numbers import MISSING, fmt, fmt_range, rounded, significant
from edgepipe.reports.rows import busy_note
from edgepipe.reports.run_snippets import snippet

WEAK_CLASS = 0.5
TEMPLATES = Path(__file__).with_name("templates")


class Raw(str):
    """Text the card itself generated (code, Markdown it built): not escaped."""


LICENSE_NOTE = Raw("edgepipe does not know the source model's license: this derived artifact inherits it. Set "
                    "`license` (and `license_name`, `license_link` for a license the Hub does not list) in the "
                    "front matter before publishing.")


def md(value) -> str:
    """A value as Markdown text (edgepipe.reports.escape.markdown); None is a dash, Raw text passes as is."""
    if value is None:
        return MISSING
    if isinstance(value, Raw):
        return value
    return escape.markdown(value)


def code(value) -> Raw:
    """Inline code: a backtick fence longer than any run of backticks inside."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Raw(f"{fence}{pad}{text}{pad}{fence}")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False, finalize=md,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(code=code, fmt=fmt, fmt_range=fmt_range)
    return env


def _load(lat: dict) -> dict | None:
    load = lat.get("load")
    if not load:
        return None
    b, a = load.get("before") or {}, load.get("after") or {}
    return {"loadavg_before": (b.get("loadavg") or [None])[0], "loadavg_after": (a.get("loadavg") or [None])[0],
            "cores": load.get("cores"), "steal_pct": load.get("steal_pct"), "busy": bool(load.get("busy")),
            "measured_at": b.get("time")}


def min_runtime(art, inp: dict | None) -> dict:
    """The oldest runtime the artifact needs, as far as edgepipe can tell from the file and its build."""
    if art.format == "tflite":
        req = (art.metadata or {}).get("min_runtime") or {}
        out = {"name": "LiteRT / TensorFlow Lite", "min_version": req.get("required"),
               "source": "operator versions and the converter's min_runtime_version metadata"}
        if req.get("unknown"):
            out["unknown_ops"] = list(req["unknown"])
        return out
    if art.format == "openvino-ir":
        v = (art.tool_versions or {}).get("openvino")
        out = {"name": "OpenVINO", "min_version": v,
               "source": "the OpenVINO release that converted and validated it; IR files are read by the same "
                         "or newer releases"}
        if (art.metadata or {}).get("compiled"):
            out["compiled_blob"] = f"the .blob loads only in OpenVINO {v} on the same CPU family"
        return out
    if art.format == "onnx":
        return {"name": "ONNX Runtime", "min_version": None, "opset": (inp or {}).get("opset"),
                "source": "any ONNX Runtime that implements the model's opset"}
    return {"name": art.format, "min_version": None}


def _model_index(art, acc: dict, lat: dict, valid, n_classes: int) -> list[dict]:
    metrics = [{"type": "accuracy", "name": "top-1 accuracy", "value": rounded(acc.get("top1"))}]
    k = acc.get("top5_k", 5)
    if acc.get("top5") is not None and k < n_classes:
        metrics.append({"type": f"top-{k}-accuracy", "name": f"top-{k} accuracy", "value": rounded(acc["top5"])})
    if acc.get("drop_points") is not None:
        metrics.append({"type": "accuracy-drop-vs-fp32", "name": "top-1 drop vs FP32 (points)",
                        "value": rounded(acc["drop_points"], 3)})
    if acc.get("agreement") is not None:
        metrics.append({"type": "agreement-with-fp32", "name": "agreement with FP32",
                        "value": rounded(acc["agreement"])})
    for q in ("p50", "p90"):
        if lat.get(f"{q}_ms") is not None:
            metrics.append({"type": f"latency-{q}-ms", "name": f"latency {q} (ms, batch 1, build host)",
                            "value": rounded(lat[f"{q}_ms"], 3)})
    metrics = [m for m in metrics if m["value"] is not None]
    data = Path(str(valid.source)).name or str(valid.source)
    return [{"name": art.name, "results": [{
        "task": {"type": "image-classification", "name": "Image Classification"},
        "dataset": {"name": data, "type": data, "split": valid.split},
        "metrics": metrics}]}]


def card_data(ctx, art, extra: dict, facts: dict | None = None) -> dict:
    """`facts`: what the run read from the artifact file (`input`: its first input tensor)."""
    m = extra.get("metrics", {})
    acc, lat, par = m.get("accuracy", {}), m.get("latency", {}), m.get("parity")
    env = extra.get("environment", {})
    inp = (facts or {}).get("input")
    cfg = ctx.cfg
    valid = cfg.data.validation
    metrics = {
        "top1": rounded(acc.get("top1")),
        "top1_ci95": [rounded(v) for v in acc.get("top1_ci95", [])] or None,
        f"top{acc.get('top5_k', 5)}": rounded(acc.get("top5")),
        "reference_top1": rounded(acc.get("ref_top1")),
        "top1_drop_points": rounded(acc.get("drop_points"), 3),
        "top1_drop_ci95_points": [rounded(v, 3) for v in acc.get("drop_ci95_points", [])] or None,
        "drop_within_noise": acc.get("drop_within_noise"),
        "agreement_with_fp32": rounded(acc.get("agreement")),
        "per_class_accuracy": {c["label"]: rounded(c["accuracy"]) for c in acc.get("per_class", [])},
        "latency_ms": {k: rounded(lat.get(f"{k}_ms"), 3) for k in ("p50", "p90", "p99", "mean")}
        | {"p50_ci95": [rounded(v, 3) for v in lat.get("p50_ci95_ms", [])]},
        "end_to_end_ms": ({k: rounded(lat["end_to_end"][f"{k}_ms"], 3) for k in ("p50", "p90", "preprocess_p50")}
                          if lat.get("end_to_end") else None),
        "throughput_images_per_s": rounded(lat.get("throughput_ips"), 2),
        "load_ms": rounded(lat.get("load_ms"), 1),
        "peak_rss_mb": rounded(lat.get("peak_rss_mb"), 1),
    }
    fid = m.get("fidelity")
    if fid:
        metrics["fidelity"] = {"agreement": rounded(fid["agreement"]),
                               "agreement_ci95": [rounded(v) for v in fid["agreement_ci95"]],
                               "output_snr_db": rounded(fid["output_snr_db"], 2),
                               "kl_mean": significant(fid["kl_mean"], 3),
                               "flipped_images": fid["flipped"]}
    if par:
        metrics["output_parity"] = {"cosine_min": rounded(par["cosine_min"], 7),
                                    "max_abs": significant(par["max_abs"], 3),
                                    "tolerance": par["max_abs_tolerance"], "passed": par["passed"]}
    n = acc.get("n_images")
    busy = busy_note(lat)
    limits = [
        f"Accuracy was measured on {n} labeled images ({valid.source}, split {valid.split}); the 95% bootstrap "
        f"interval on the drop vs FP32 is {_ci_text(acc)} points. Other data may score differently.",
        f"Latency was measured on the build host ({env.get('cpu', 'unknown CPU')}, {lat.get('threads', cfg.threads)} "
        f"threads, batch 1, {lat.get('runtime')}), not on the target device; expect different numbers there.",
        f"Inputs must be preprocessed exactly as preprocess.json says ({ctx.spec.height}x{ctx.spec.width}, "
        f"{ctx.spec.color}, {ctx.spec.mode} scaling, {ctx.spec.interpolation} resize).",
        f"Predicts only these {len(ctx.labels)} classes: {', '.join(ctx.labels)}.",
    ]
    if busy:
        limits.append(f"{busy[0].upper()}{busy[1:]}; its numbers say as much about the other processes as about "
                      "the artifact.")
    weak = [f"{c['label']} {fmt(c['accuracy'], '.2f')} (n={c['n']})" for c in acc.get("per_class", [])
            if c["accuracy"] is not None and c["accuracy"] < WEAK_CLASS]
    if weak:
        limits.append(f"Weak classes (accuracy < {fmt(WEAK_CLASS, 'g')} on the validation images): {', '.join(weak)}.")
    if art.precision == "int8":
        limits.append(f"INT8 calibrated on the calibration set with sha256 {art.calibration_sha256}; "
                      "inputs far outside its range lose accuracy.")
    recipe = {k: v for k, v in (art.recipe or {}).items() if v is not None} if art.recipe else None
    tags = ["edgepipe", "image-classification", art.format, art.precision, art.target]
    return {
        "license": "other",
        "license_name": "source-model-license",
        "tags": list(dict.fromkeys(str(t) for t in tags if t)),
        "pipeline_tag": "image-classification",
        "model-index": _model_index(art, acc, lat, valid, len(ctx.labels)),
        "model": {"name": art.name, "file": art.path.name, "format": art.format, "sha256": art.sha256,
                  "size_mb": rounded(art.size_bytes / 1e6, 2), "source_model_sha256": art.source_model_sha256},
        "target": art.target,
        "precision": art.precision,
        "dataset": {"validation": {"source": valid.source, "split": valid.split, "n_images": n,
                                   "labels": list(ctx.labels)},
                    "calibration": {"sha256": art.calibration_sha256}},
        "metrics": metrics,
        "quantization": {"recipe": recipe, "calibration_sha256": art.calibration_sha256, "input": inp or None}
        | ({"input_error": facts["input_error"]} if (facts or {}).get("input_error") else {}),
        "runtime": min_runtime(art, inp),
        "environment": {**env, "threads": lat.get("threads", cfg.threads), "runtime": lat.get("runtime"),
                        # the runtime settings the timed runner used (ONNX Runtime: its session config entries)
                        **({"session_config": lat["session_config"]} if "session_config" in lat else {}),
                        "tools": art.tool_versions, "load": _load(lat)},
        "status": extra.get("status"),
        "gate_failures": extra.get("gate_failures", []),
        "limits": limits,
        "generated_by": f"edgepipe {__version__}",
    }


def _ci_text(acc: dict) -> str:
    ci = acc.get("drop_ci95_points")
    if not ci:
        return "not available"
    return fmt_range(ci, "+.2f") + (" (within noise)" if acc.get("drop_within_noise") else "")


def render(data: dict, preprocess: dict | None = None) -> str:
    """README.md: the front matter, then the body from the template. `preprocess`: preprocess.json's
    values (for the how-to-run program; without them the card has none)."""
    m, lat = data["metrics"], data["metrics"]["latency_ms"]
    k = next((key for key in m if key.startswith("top") and key[3:].isdigit() and key != "top1"), None)
    inp = data["quantization"]["input"] or {}
    run = snippet(data["model"]["format"], data["target"], data["model"]["file"], preprocess, inp,
                  data["environment"].get("threads") or 2, int8=data["precision"] == "int8") if preprocess else {}
    rows = [("top-1 (95% CI)", f"{fmt(m['top1'], '.4f')} ({fmt_range(m.get('top1_ci95'), '.3f')})")]
    if k and m.get(k) is not None and int(k[3:]) < len(data["dataset"]["validation"]["labels"]):
        rows.append((f"top-{k[3:]}", fmt(m[k], ".4f")))
    rows += [("top-1 drop vs FP32 (points, 95% CI)",
              f"{fmt(m['top1_drop_points'], '+.2f')} ({fmt_range(m['top1_drop_ci95_points'], '+.2f')})"),
             ("agreement with FP32", fmt(m["agreement_with_fp32"], ".3f")),
             ("latency p50 / p90 / p99 ms (build host)",
              " / ".join(fmt(lat[q], ".2f") for q in ("p50", "p90", "p99"))),
             ("throughput (images/s, batch 1)", fmt(m["throughput_images_per_s"], ".1f"))]
    load = data["environment"].get("load")
    body = environment().get_template("model_card.md.j2").render(
        d=data, rows=rows, run=run, code_block=Raw(_fence(run.get("code", ""))) if run else None,
        recipe=sorted((data["quantization"]["recipe"] or {}).items()), inp=inp,
        input_scale=fmt(inp.get("scale"), ".8g") if inp.get("scale") is not None else None,
        runtime=data["runtime"], busy=bool(load and load.get("busy")),
        load_text=(f"load average {fmt(load['loadavg_before'], '.2f')} → {fmt(load['loadavg_after'], '.2f')} on "
                   f"{load['cores']} cores, CPU steal {fmt(load['steal_pct'], '.1f')}%, at {load['measured_at']}"
                   if load else None),
        license_note=LICENSE_NOTE)
    front = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip()
    return f"---\n{front}\n---\n\n{body}"


def _fence(text: str) -> str:
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence}python\n{text}{fence}"


def write_model_card(path: Path, ctx, art, extra: dict, facts: dict | None = None) -> Path:
    data = card_data(ctx, art, extra, facts)
    Path(path).write_text(render(data, ctx.spec.as_dict()), encoding="utf-8")
    return Path(path)


def read_front_matter(path: Path) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ValueError(f"{path}: expected YAML front matter starting with '---'. Received: {text[:20]!r}")
    return yaml.safe_load(text[4:text.index("\n---\n", 4)])
