"""Validators: what is measured on each built artifact, and the gates that turn it into pass/fail.

    base.py             the protocols: Validator (per artifact), RunValidator (over all rows of a run),
                        ValidationInputs, ValidatorResult, `validate` (runs a list in order)
    registry.py         the ordered lists: VALIDATORS (accuracy, latency, parity, per_layer) and
                        RUN_VALIDATORS (cross_quantizer); a new validator is a module plus a line here
    accuracy.py         top-1 / top-k / per class / confusion, drop vs FP32 with a CI; gate max_top1_drop
    latency.py          the latency measurement and its summary; gate max_p90_ms
    latency_stage.py    the cached `latency-*` stage and LatencyValidator
    latency_child.py    the child process that times an artifact (clean peak RSS)
    roofline.py         MACs per image of an IR and the CPU's peak MAC rate: a latency as a share of the peak
    parity.py           float artifacts vs the FP32 reference; gate parity_min_cosine / parity_max_abs
    per_layer.py        per-layer INT8 error (a diagnostic: its failure never costs the row)
    cross_quantizer.py  INT8 artifacts of different quantizers should agree; gate cross_quantizer_max_gap
    stats.py            confidence intervals (paired bootstrap, order statistics)
    gates.py            statuses and the run's exit code

See README.md here for the protocol and the "adding a validator" checklist.
May import core, calibration and formats.
"""
