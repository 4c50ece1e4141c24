"""One run of pipeline.yaml, in the order the data walks:

    context.py      RunContext: config, stage cache, lazily loaded model and data
    reference.py    the FP32 reference (scores, row) and the cached scores stage
    target.py       per target: build -> probe -> scores -> validators (each with its gates) -> publish:
                    one ReportRow per artifact (validators: pipeline/validators/registry.py)
    probe.py        load + first inference of each artifact in a child process with limits
    fanout.py       every target on an executor (the local executor is the one serial loop)
    orchestrate.py  run_pipeline: lock the output, reference, targets, cross-quantizer, report.json/html
    precheck.py     every input checked before the output folder, its lock or any sweep is touched
    outdir.py       the output directory's checks, lock, atomic publication, leftovers
    standalone.py   `edgepipe validate | bench` on foreign artifacts

May import core, config, calibration, formats, stages, quantize, diagnostics, validators, reports,
executors and the `targets` registry; never cli, boards or sweeps.
"""
