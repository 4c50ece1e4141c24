"""INT8 quantization: `recipes.py` (the recipe schema, the built-in table, and what each quantizer can
do), `equalize.py` + `keras_graph.py` (function-preserving rescalings of the Keras model),
`accuracy_aware.py` (accuracy budgets), `recipe_stages.py` (the cached stages of those recipe fields).

May import core, calibration, formats and stages. Toolkits are imported inside functions.
"""
