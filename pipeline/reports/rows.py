"""The typed report row: one artifact (or check, or reference, or failed target) of a run or sweep.

`ReportRow` is frozen. Producers build one (`edgepipe.engine.reference`, `edgepipe.engine.target`, the
fan-out's failed rows, a target's check rows); anything that changes a row (the cross-quantizer check,
a sweep's tags, board benchmarks) makes a new one with `replace` or `with_verdict`.

Its JSON form (`to_json`) is a public interface: report.json's `artifacts`, sweep.json's `rows`,
`edgepipe bench --report` and the tests read it. A key appears in the JSON exactly when the producer set
it (an unset field is absent; a field set to None is `null`), so `ReportRow.from_json(row).to_json() ==
row` for every row a run writes. Keys this class does not name (a new validator's result) are kept too,
after the named ones: a new validator needs no change here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgepipe.reports.numbers import fmt

Json = dict[str, Any]


def busy_note(latency: Json | None) -> str | None:
    """What every renderer says about a latency measured on a busy machine (its `load` says `busy`:
    the 1-minute load average above the core count); None when it was not, or was not recorded."""
    load = (latency or {}).get("load") or {}
    if not load.get("busy"):
        return None
    peak = max((s["loadavg"][0] for s in (load.get("before") or {}, load.get("after") or {}) if s.get("loadavg")),
               default=None)
    steal = load.get("steal_pct")
    return (f"latency measured on a busy machine: load average {fmt(peak, '.1f')} on {load.get('cores')} cores"
            + (f", CPU steal {fmt(steal, '.1f')}%" if steal else ""))


def roofline_cell(latency: Json | None) -> str | None:
    """A latency's roofline share as every renderer shows it ("71% of INT8"); None when it has none."""
    roof = (latency or {}).get("roofline")
    return f"{fmt(100 * roof['share'], '.0f')}% of {roof['of_peak'].upper()}" if roof else None


def roofline_basis(latencies: list[Json | None]) -> str | None:
    """The peak the rows' roofline shares are held against, once (the first row that has one): work per
    image, MACs per cycle and why, cores, clock and where the clock came from."""
    roof = next((lat["roofline"] for lat in latencies if lat and lat.get("roofline")), None)
    if roof is None:
        return None
    return (f"roofline: the p50's share of this CPU's peak MAC rate, {fmt(roof['macs_per_image'] / 1e9, '.3g')} GMAC "
            f"per image over {roof['cores']} core(s) x {fmt(roof['clock_ghz'], '.2f')} GHz ({roof['clock_source']}) x "
            f"the MACs per cycle of {roof['isa']} ({roof['assumes']}; pipeline/validators/roofline.py)")


class ReportRow(BaseModel):
    """One row. Fields in the order report.json shows them; every one but `artifact` may be absent."""

    model_config = ConfigDict(frozen=True, extra="allow")

    artifact: str  # "<target>/<precision>", "<target>/*" for a failed target, "... (reference)", check names
    target: str | None = None  # a target name, "reference", or a check's pseudo-target ("arm64-emulated")
    precision: str | None = None  # "fp32", "int8", ...; null for a failed target
    reasons: list[str] = Field(default_factory=list)  # gate failures, then what this host could not do
    # what was built
    size_mb: int | float | None = None  # an int stays an int: the JSON keeps what the producer wrote
    sha256: str | None = None
    format: str | None = None
    scores_shared_with: str | None = None  # the artifact whose cached scores this identical file reused (Job.scores_as)
    status: str | None = None  # passed | failed | error | partial | reference | skipped | unreachable
    # validators' results (edgepipe.validators.registry), under each validator's name
    accuracy: Json | None = None
    latency: Json | None = None
    calibration_sha256: str | None = None
    recipe: Json | str | None = None  # the artifact's recipe record; a sweep row: the sweep recipe's name
    parity: Json | None = None
    fidelity: Json | None = None  # quantized artifacts: agreement, output SNR, KL, flips (validators/fidelity.py)
    target_info: Json | None = None  # Artifact.metadata (e.g. the minimum TFLite runtime)
    per_layer: list[Json] | None = None
    per_layer_error: str | None = None
    dir: str | None = None  # the published artifact directory
    cross_quantizer: Json | None = None  # a run validator's result: set after the row was published
    # a partial row this host cannot finish (no compiler, device or package): pipeline/engine/availability.py
    not_available_here: bool | None = None
    how_to_finish: str | None = None
    # a row that went wrong
    traceback: str | None = None
    failure: Json | None = None  # an executor Failure (a target or cell that did not return)
    # a target's check rows (e.g. tflite-arm's verify_arm64)
    note: str | None = None
    unavailable: str | None = None
    arm64: Json | None = None
    emulated_latency: Json | None = None
    host_latency: Json | None = None
    # a sweep's rows
    id: str | None = None
    model: str | None = None
    cell: str | None = None
    boards: dict[str, Json] | None = None

    @classmethod
    def from_json(cls, data: Json) -> ReportRow:
        return cls.model_validate(data)

    def to_json(self) -> Json:
        """The row as report.json holds it: the keys that were set, named fields first, then the others."""
        return self.model_dump(exclude_unset=True)

    @property
    def extra(self) -> Json:
        """Keys this class does not name (e.g. the result of a validator added after it)."""
        return dict(self.model_extra or {})

    def get(self, key: str, default: Any = None) -> Any:
        """A key of the JSON form (named or not), `default` when it was not set."""
        return self.to_json().get(key, default)

    def busy(self) -> str | None:
        """`busy_note` of this row's latency: set when it was measured on a busy machine."""
        return busy_note(self.latency)

    def replace(self, **changes: Any) -> ReportRow:
        """A new row with `changes` (validated; keys keep their place, new keys go last)."""
        return type(self).model_validate({**self.to_json(), **changes})

    def with_verdict(self, name: str, result: Any, gate_failures: list[str] | tuple[str, ...] = ()) -> ReportRow:
        """A new row with a run-level validator's `result` under `name`; failed when it has gate failures."""
        if not gate_failures:
            return self.replace(**{name: result})
        return self.replace(**{name: result}, status="failed", reasons=[*self.reasons, *gate_failures])
