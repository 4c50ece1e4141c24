"""edgepipe from Python, notebook-sized: list the targets, run a pipeline on an in-memory Keras model,
read the typed rows, re-validate one artifact on its own.

    python examples/python_api.py                                   # the built-in elpv-xception example
    python examples/python_api.py MODEL.keras CONFIG.yaml OUTPUT DATA   # your model, config, labeled images

Each cell below is what you would type in a notebook.
"""

from __future__ import annotations

import sys
from pathlib import Path

import edgepipe


def main(model_path: str | None = None, config: str = "example:elpv-xception", output: str = "edgepipe-out",
         data: str | None = None):
    # 1. What this host can build (the registry; no toolkit is imported).
    for t in edgepipe.targets():
        print(f"{t['name']:<14} {t['precisions']}  {t['description']}")

    # 2. A run: a pipeline.yaml path, 'example:NAME' or a dict; `model` may be a keras.Model in memory.
    model = None
    if model_path:
        import keras

        model = keras.saving.load_model(model_path, compile=False)  # e.g. the model you just trained
    report = edgepipe.run(config, model=model, output=output)

    # 3. The typed rows: the same content as OUTPUT/report.json.
    for row in report.rows:
        top1 = row.accuracy.get("top1") if row.accuracy else None
        print(f"{row.artifact:<24} {row.status:<8} top-1={top1}")
    print("exit code", report.exit_code, "->", report.path / "report.html")

    # 4. Any artifact on its own: accuracy on labeled images (same as `edgepipe validate`).
    checked = None
    tflite = [p for r in report.rows if r.status == "passed" and r.dir for p in sorted(Path(r.dir).glob("*.tflite"))]
    if data and tflite:
        checked = edgepipe.validate(tflite[0], data=data)
        print(tflite[0].name, "top-1 on", data, "=", checked["accuracy"]["top1"])
    return report, checked


if __name__ == "__main__":
    main(*sys.argv[1:])
