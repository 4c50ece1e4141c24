"""Validators: accuracy vs the FP32 reference, latency on real inputs, and gates."""
