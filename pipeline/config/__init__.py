"""pipeline.yaml: the strict pydantic schema (`schema.py`), loading, and path resolution.

May import `pipeline.core`, `pipeline.quantize.recipes` and (lazily, to validate target options)
the `targets` registry. Nothing here imports a toolkit.
"""
