"""Typed errors. Each carries the process exit code the CLI returns for it."""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3


class EdgepipeError(Exception):
    """Base class: a problem edgepipe can explain to the user."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(EdgepipeError):
    """pipeline.yaml (or a CLI option) is invalid."""


class InputError(EdgepipeError):
    """A model, data set or labels file is not what edgepipe expects."""


class StageError(EdgepipeError):
    """A conversion or quantization stage failed for one artifact."""

    exit_code = EXIT_GATE_FAILED


class OutputLockedError(EdgepipeError):
    """Another edgepipe run holds the output directory."""


class OutputWriteError(EdgepipeError):
    """The output directory cannot be written (disk full, read-only): the run aborts, old outputs stay."""


def expected_received(what: str, expected: object, received: object) -> str:
    """The house style for messages: say what was expected and what was received."""
    return f"{what}: expected {expected}. Received: {received}"


# a line that only says where a runtime raised (OpenVINO: "Exception from src/.../core.cpp:84:",
# "Check 'x' failed at src/.../file.cpp:900:"); the reason is on a later line
_WHERE_LINE = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:?)$")


def runtime_reason(err: BaseException, limit: int = 400) -> str:
    """A runtime's error message on one line: the lines that say why, without the lines that only say where
    in the runtime's sources it was raised (OpenVINO puts the reason last); the first line if that is all."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    reasons = [line for line in lines if not _WHERE_LINE.match(line)]
    return " ".join(reasons or lines[:1])[:limit]


class BundleError(EdgepipeError):
    """A bundle or bundle archive is invalid: tampered, unsigned, unsafe paths, or a downgrade."""


class RemoteError(EdgepipeError):
    """A board could not be reached or failed a remote step (exit 3: partial remote failure)."""

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, status: str = "failed"):
        super().__init__(message)
        self.status = status  # short per-board status: "unreachable", "auth failed", "timeout", ...


class DeviceUnavailableError(EdgepipeError):
    """An artifact was built but could not be validated where it must run: its device is
    unreachable or its runtime is missing on this host. The run is partial (exit 3)."""

    exit_code = EXIT_PARTIAL
