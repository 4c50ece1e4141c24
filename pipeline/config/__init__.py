"""pipeline.yaml: the strict pydantic schema (`schema.py`), loading within limits (`yamlfile.py`), and
path resolution.

May import `edgepipe.core`, `edgepipe.quantize.recipes` and (lazily, to validate target options)
the `targets` registry (and, lazily, `edgepipe.formats.inspect` to describe a file that is not
YAML text). Nothing here imports a toolkit.
"""
