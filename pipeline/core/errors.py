"""Typed errors. Each carries the process exit code the CLI returns for it."""

from __future__ import annotations

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
