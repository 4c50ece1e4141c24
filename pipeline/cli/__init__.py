"""The `edgepipe` command line: `app.py` (run, sweep, examples, and `main`), `inspect.py` (targets,
recipes, preflight, verify-arm), `measure.py` (validate, bench), `boards.py` (keygen, bundle, verify,
ship), `common.py` (the Typer app and shared options).

The top of the house: may import anything, but only inside command functions, so that
`edgepipe --help` never imports TensorFlow, OpenVINO, NNCF or ONNX.
"""
