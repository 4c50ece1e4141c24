"""The toolkits' usage reporting, off in edgepipe's processes unless asked for.

Three of the toolkits edgepipe drives report usage over the network by default:
- **OpenVINO** (`openvino_telemetry`, Google Analytics): `import openvino` and every `ov.convert_model`
  send events, and so does NNCF's `nncf.quantize` outside pytest. Without a consent file (`opt_in_out`)
  OpenVINO's converter counts the user as consenting. Each event forks the calling process to make one
  HTTP request (`openvino_telemetry/backend/backend_ga4.py`: a `multiprocessing.Process`, joined for up
  to its timeout). In a process that holds TensorFlow that is expensive: measured on the tiny test
  Xception, one `ov.convert_model` took 1.4-1.8 s with it and 0.10 s without, and the forked children
  used 9.1 CPU-seconds for four conversions (benchmarks/README.md).
- **MLflow** 3 (the optional tracking export): a thread that posts records (`MLFLOW_DISABLE_TELEMETRY`).
- **Ray** (the optional executor): usage statistics (`RAY_USAGE_STATS_ENABLED`).

edgepipe runs offline (no downloads, nothing sent), so `quiet_toolkits()`, called when the package is
imported, turns all three off for this process and the children it starts:
- `import openvino_telemetry` is made to fail (`sys.modules[name] = None`, Python's way of blocking an
  import). OpenVINO's converter then uses its own stub (`openvino/tools/ovc/telemetry_stub.py`) and NNCF
  its `NNCFTelemetryStub`, as they do when the package is not installed. Nothing on disk changes: the
  user's consent file, if any, stays as it is. A process that imported OpenVINO before edgepipe keeps
  its telemetry (it was already set up).
- `MLFLOW_DISABLE_TELEMETRY=true` and `RAY_USAGE_STATS_ENABLED=0`, unless the user set them.

`EDGEPIPE_TOOLKIT_TELEMETRY=1` leaves every toolkit as it would be without edgepipe.
"""

from __future__ import annotations

import os
import sys

ENV = "EDGEPIPE_TOOLKIT_TELEMETRY"
BLOCKED_MODULES = ("openvino_telemetry",)
OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}


def allowed() -> bool:
    """True when the user asked edgepipe to leave the toolkits' telemetry alone."""
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def quiet_toolkits() -> None:
    """Turn the toolkits' usage reporting off in this process and its children (see the module doc)."""
    if allowed():
        return
    for name in BLOCKED_MODULES:
        sys.modules.setdefault(name, None)  # an already imported module stays: it is set up and in use
    for key, value in OFF.items():
        os.environ.setdefault(key, value)
