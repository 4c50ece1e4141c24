"""Artifact formats: identify a model file by its bytes and check its structure before any runtime
sees it (`inspect.py`), the minimum TFLite runtime a .tflite needs (`tflite_versions.py`), and the
host runners that execute each format (`runners.py`).

May import `pipeline.core` and `calibration` only.
"""
