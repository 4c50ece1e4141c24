"""`edgepipe init | schema`, and the config `edgepipe run` starts from: a pipeline.yaml, a built-in example,
or your own model with `--data` (built by `pipeline/engine/from_model.py`, every choice stated on stderr, and
written to OUTPUT/pipeline.yaml after the run so that file repeats it)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from edgepipe.cli.common import DATA_EXPECTED, app, fail, json_out, jsonable, refuse_empty
from edgepipe.core.errors import EdgepipeError

OWN = "With your own MODEL"


def run_config(source: Path | None, example: str, own: dict, *, output=None, threads=None, executor=None,
               trust: bool = False):
    """(config, plan): `plan` is None for a pipeline.yaml or an example, else how the config was built for a model."""
    from edgepipe.config.schema import example_config_path, load_config, parse_config
    from edgepipe.core.errors import ConfigError, expected_received
    from edgepipe.engine.from_model import source_kind

    kind = "example" if source is None else source_kind(source)
    flags = {"precision": "--int8/--fp32"}
    given = [flags.get(k, f"--{k}") for k, v in own.items() if v is not None]
    if kind != "model":
        if given:
            what = "the built-in example" if source is None else "a pipeline.yaml"
            raise ConfigError(expected_received(", ".join(given), "a MODEL as the first argument (they build its "
                                                "config)", f"{what}; set these keys in the YAML instead"))
        cfg = load_config(source if source is not None else example_config_path(example))
        overrides = {k: v for k, v in {"output": output, "threads": threads, "executor": executor}.items()
                     if v is not None}
        if trust:
            overrides["model"] = {**cfg.model.model_dump(exclude_none=True), "trust": True}
        if overrides:
            cfg = parse_config({**cfg.model_dump(mode="json", exclude_none=False), **jsonable(overrides)},
                               source="command line")
        return cfg, None
    if own["data"] is None:
        raise ConfigError(expected_received("--data", f"labeled images for {source.name} (a folder of class "
                                            "sub-folders, or a CSV path,label)",
                                            "none; or write a pipeline.yaml with `edgepipe init MODEL`"))
    plan = _plan(source, own, output=output, threads=threads, executor=executor, trust=trust)
    from edgepipe.engine.from_model import build_config

    return build_config(plan), plan


def _plan(model: Path, own: dict, **kw):
    from edgepipe.core.errors import ConfigError, expected_received
    from edgepipe.core.progress import stderr
    from edgepipe.engine.from_model import plan_for_model

    # an empty value is a mistake, not "the default": --data '' read the current folder as the data set,
    # --targets ',' built nothing and said "at least one that builds None"
    refuse_empty("--data", own.get("data"), DATA_EXPECTED)
    names = [t.strip() for t in own["targets"].split(",") if t.strip()] if own.get("targets") is not None else None
    if names == []:
        raise ConfigError(expected_received("--targets", "comma-separated target names (`edgepipe targets` lists "
                                            "them)", f"{own['targets']!r}, no name"))
    plan = plan_for_model(model, own.get("data"), target_names=names, labels=own.get("labels"),
                          precision=own.get("precision"), preprocessing=own.get("preprocessing"), **kw)
    for note in plan.notes:  # every choice, one line each
        stderr.print(note, highlight=False, markup=False, soft_wrap=True)
    return plan


def write_repeatable(plan, cfg) -> Path:
    """OUTPUT/pipeline.yaml: the config this run used, commented; `edgepipe run` on it repeats the run."""
    from edgepipe.core.progress import stderr
    from edgepipe.engine.from_model import config_yaml

    dest = Path(cfg.output) / "pipeline.yaml"
    how = f"edgepipe run {Path(str(cfg.model.path)).name} --data ..."
    _write(dest, config_yaml(plan, cfg, how, dest), force=True)  # replaced by every run: the output is edgepipe's
    stderr.print(f"config: {dest} (`edgepipe run {dest}` repeats this run)", highlight=False, markup=False,
                 soft_wrap=True)
    return dest


def _write(dest: Path, text: str, force: bool) -> None:
    """Write `dest` whole or not at all: the temporary file is removed when the write or rename fails.
    The path was checked before the model loaded (seconds): it is checked again at the rename, so what appeared
    there meanwhile is kept. A new file is made with link() (EEXIST if something is there now, never replaced);
    with `force` the path is checked again right before the rename (a FIFO or device put there is refused)."""
    import errno

    from edgepipe.core.errors import ConfigError, expected_received

    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        if force:
            _replaceable(dest)
            os.replace(tmp, dest)
            return
        try:
            os.link(tmp, dest)
        except FileExistsError:
            raise ConfigError(expected_received(f"--output {str(dest)!r}", "a new file (or --force to replace it)",
                                                "a file that appeared while the model was read")) from None
        except OSError as err:  # a filesystem without hard links: the plain rename, after one more look
            if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK) or \
                    os.path.lexists(dest):
                raise
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _replaceable(output: Path) -> None:
    """`init -o X` writes a new file X, or with --force replaces a regular file X (through a link to one).
    Anything else is refused, --force or not: the YAML is renamed over the path, so a device node, a FIFO or a
    socket would be replaced by a file (`-o /dev/full --force` replaced the system's /dev/full), a folder or a
    link that leads nowhere or in a loop cannot hold it."""
    import errno
    import stat

    from edgepipe.core import safeio
    from edgepipe.core.errors import ConfigError, expected_received

    label = f"--output {str(output)!r}"
    expected = "a writable file: a new file, or an existing regular file with --force"
    try:
        st = os.stat(output)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.islink(output):
            return  # a new file (a missing or unusable folder is named when the file is written)
        raise ConfigError(expected_received(label, expected, safeio.os_problem(output, err))) from None
    except ValueError:  # a NUL byte
        raise ConfigError(expected_received(label, expected, safeio.NUL_PATH)) from None
    if not stat.S_ISREG(st.st_mode):
        what = safeio.kind_of(st.st_mode)
        if os.path.islink(output):
            what = f"a symbolic link to {what} ({os.readlink(output)!r})"
        raise ConfigError(expected_received(label, expected, f"{what}; edgepipe never replaces it, --force or not"))


def _apart_from_inputs(output: Path, inputs: dict[str, str | Path | None]) -> None:
    """`init -o FILE` never replaces one of its own inputs, --force or not (it would destroy the model)."""
    from edgepipe.core.errors import ConfigError, expected_received
    from edgepipe.core.overlap import SAME, overlap

    for what, path in inputs.items():
        if path is None or str(path).startswith("example:"):
            continue
        where = overlap(output, path, contains=False)
        if where:
            where = "is" if where == SAME else where
            raise ConfigError(expected_received(f"--output {str(output)!r}", "a pipeline.yaml apart from every input "
                                                f"(--force replaces only a file that is not one); it {where} the "
                                                f"{what}", f"{what} {str(path)!r}; choose another --output"))


@app.command()
def init(
    model: Path = typer.Argument(..., help="your model: a .keras file or a SavedModel directory"),
    data: str | None = typer.Option(None, help="labeled images: a folder of class sub-folders, or a CSV path,label "
                                               "(default: placeholders to fill in)"),
    targets: str | None = typer.Option(None, help="comma-separated targets (default: those this host can build)"),
    labels: Path | None = typer.Option(None, help="labels file, one class per line in output order (default: the "
                                                  "class folders' names, sorted)"),
    precision: bool | None = typer.Option(None, "--int8/--fp32", help="INT8 or FP32 artifacts only (default: each "
                                                                      "target's own)"),
    preprocessing: str | None = typer.Option(None, help="xception | unit | imagenet | raw (default: xception)"),
    output: Path = typer.Option(Path("pipeline.yaml"), "-o", "--output", help="the pipeline.yaml to write"),
    force: bool = typer.Option(False, "--force", help="replace an existing file"),
    trust_model: bool = typer.Option(False, "--trust-model", help="allow Keras models needing safe_mode=False"),
    as_json: bool = typer.Option(False, "--json", help="print what was written (path, notes) as JSON"),
) -> None:
    """Write a commented pipeline.yaml for your model (input size read from the model, labels from --data)."""
    from edgepipe.core.errors import ConfigError, expected_received
    from edgepipe.engine.from_model import build_config, config_yaml, source_kind

    try:
        if source_kind(model) != "model":
            raise ConfigError(expected_received("MODEL", "a .keras file or a SavedModel directory",
                                                f"{str(model)!r}, a YAML file (`edgepipe run` runs it)"))
        _replaceable(output)  # first: a link loop would stop the path resolution below
        _apart_from_inputs(output, {"model": model, "labels file": labels, "data": data})
        if output.exists() and not force:
            raise ConfigError(expected_received(f"--output {str(output)!r}", "a new file (or --force to replace it)",
                                                "an existing file"))
        own = {"data": data, "targets": targets, "labels": labels,
               "precision": None if precision is None else ("int8" if precision else "fp32"),
               "preprocessing": preprocessing}
        plan = _plan(model, own, trust=trust_model, for_file=True)
        dest = output.resolve()
        cfg = build_config(plan, base=dest.parent)
        _write(dest, config_yaml(plan, cfg, f"edgepipe init {model.name}", dest), force)
    except EdgepipeError as err:
        fail(err, as_json)
    except OSError as err:
        from edgepipe.core.errors import OutputWriteError

        fail(OutputWriteError(f"--output {str(output)!r}: expected a writable file. Received: {err.strerror}"),
             as_json)
    if as_json:
        json_out({"written": str(dest), "notes": plan.notes})
    else:
        typer.echo(f"wrote {dest}: check the lines marked TODO, then `edgepipe run {dest}`"
                   if data is None else f"wrote {dest}: `edgepipe run {dest}` runs it")


@app.command()
def schema(as_json: bool = typer.Option(False, "--json", help="accepted for uniformity: the schema is JSON")) -> None:
    """Print the JSON schema of pipeline.yaml, generated from its pydantic model (for editors and validators)."""
    from edgepipe.config.schema_json import pipeline_schema

    del as_json
    json_out(pipeline_schema())
