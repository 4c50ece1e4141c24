"""The JSON schema of pipeline.yaml (`edgepipe schema`), generated from the pydantic model in `schema.py`.

Pydantic's schema of `PipelineConfig`, plus what only the registry knows: a target's `name` is one of
the registered targets, and its `options` follow that target's own `Options` model (an `if`/`then` per
target), so an editor or `jsonschema` checks a target's options as the run will. Importing the target
modules imports no toolkit.
"""

from __future__ import annotations

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def pipeline_schema() -> dict:
    from edgepipe import targets
    from edgepipe.config.schema import PipelineConfig

    schema = PipelineConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    entry = defs["TargetEntry"]
    entry["properties"]["name"] = {"title": "Name", "description": "a target of the registry (`edgepipe targets`)",
                                   "enum": sorted(targets.REGISTRY)}
    branches = []
    for name in sorted(targets.REGISTRY):
        options = targets.load_module(name).Options.model_json_schema(ref_template=f"#/$defs/{name}.{{model}}")
        for key, sub in options.pop("$defs", {}).items():
            defs[f"{name}.{key}"] = sub
        options.pop("title", None)
        defs[f"{name}.Options"] = options
        branches.append({"if": {"properties": {"name": {"const": name}}},
                         "then": {"properties": {"options": {"$ref": f"#/$defs/{name}.Options"}}}})
    entry["allOf"] = branches
    return {"$schema": DIALECT, **schema, "title": "edgepipe pipeline.yaml"}
