"""Validators: accuracy vs the FP32 reference, output parity, latency on real inputs, the
cross-quantizer check, confidence intervals, and the gates that turn results into pass/fail.

May import core, calibration and formats.
"""
