"""Coral Edge TPU helpers for the `coral-edgetpu` target: the supported-op table (`ops.py`), the
pre-flight that reads a .tflite without the compiler (`preflight.py`), and the `edgetpu_compiler`
wrapper and log parser (`compiler.py`).

May import `edgepipe.core` and `edgepipe.formats`.
"""
