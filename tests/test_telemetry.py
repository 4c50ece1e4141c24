"""The toolkits' usage reporting is off in edgepipe's processes unless asked for (pipeline/core/telemetry.py).

Each case runs in a fresh interpreter: the block must be in place before OpenVINO is first imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os, sys
import edgepipe
import openvino as ov
import openvino.tools.ovc.convert_impl as ci
from nncf.telemetry import wrapper
print(json.dumps({"blocked": sys.modules.get("openvino_telemetry", "absent") is None,
                  "ovc": ci.tm.__name__, "nncf": type(wrapper.telemetry).__name__,
                  "mlflow": os.environ.get("MLFLOW_DISABLE_TELEMETRY"),
                  "ray": os.environ.get("RAY_USAGE_STATS_ENABLED")}))
"""


def _probe(**env) -> dict:
    base = {k: v for k, v in os.environ.items()
            if k not in ("EDGEPIPE_TOOLKIT_TELEMETRY", "MLFLOW_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                         env={**base, **env}, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_openvino_nncf_mlflow_and_ray_report_nothing_by_default():
    got = _probe()
    # OpenVINO's converter falls back to its own stub, NNCF to its stub (a MagicMock outside pytest too)
    assert got == {"blocked": True, "ovc": "openvino.tools.ovc.telemetry_stub", "nncf": "MagicMock",
                   "mlflow": "true", "ray": "0"}


def test_the_user_can_leave_the_toolkits_alone():
    got = _probe(EDGEPIPE_TOOLKIT_TELEMETRY="1")
    assert got["blocked"] is False and got["ovc"] == "openvino_telemetry" and got["nncf"] == "NNCFTelemetry"
    assert got["mlflow"] is None and got["ray"] is None


def test_a_setting_the_user_made_wins():
    got = _probe(MLFLOW_DISABLE_TELEMETRY="false", RAY_USAGE_STATS_ENABLED="1")
    assert (got["mlflow"], got["ray"]) == ("false", "1") and got["blocked"]


@pytest.mark.parametrize("value, allowed", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)])
def test_only_a_clear_yes_allows_it(monkeypatch, value, allowed):
    from edgepipe.core import telemetry

    monkeypatch.setenv(telemetry.ENV, value)
    assert telemetry.allowed() is allowed
