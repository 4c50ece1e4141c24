"""Where the quantization error is: per-layer error of an INT8 artifact vs its FP32 sibling, mapped
to Keras layer names (`layer_errors.py`).

May import core, calibration, formats and stages.
"""
