"""INT8 quantization.

- `recipes.py`: the recipe schema, the built-in table, `problems(recipe, quantizer)` (dispatches to
  the quantizer's module).
- `quantizers/`: one module per quantizer (tflite, nncf, onnxruntime, edgetpu), each holding what it
  can do beside how a recipe becomes its toolchain's calls and its cached INT8 stages; a lazy registry.
- `equalize.py` + `keras_graph.py`: function-preserving rescalings of the Keras model.
- `accuracy_aware.py`: the toolchain-free budget algorithms (float fallback, full-integer repairs).
- `recipe_stages.py`: the cached stages every quantizer shares (equalized SavedModel, control set).

README.md has the code map and the checklists for a new quantization method or quantizer.
May import core, calibration, formats and stages (and, lazily, `validators.accuracy.predict_all` to score
the accuracy-control set). Toolkits are imported inside functions.
"""
