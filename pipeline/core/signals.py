"""Hold Ctrl-C and SIGTERM across a few statements that must not be split.

`held()`: within the block SIGINT and SIGTERM are only recorded; at its end the handlers in place before are put
back and each recorded signal is raised again, so Ctrl-C's KeyboardInterrupt, edgepipe's `Terminated`
(pipeline/core/children.py) or the default action happens right after the block, never inside it. Used where a
folder is created and then marked as edgepipe's (pipeline/core/tempdirs.py): a signal between the two would leave
an unmarked folder that no sweep may ever remove. Python runs signal handlers in the main thread only, so in any
other thread no signal can interrupt the block and `held()` does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading

HELD = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: unfinished work is discarded, locks released, exit 143."""


# set by SIGTERM's handler (`install_sigterm`, pipeline/core/children.py) and never cleared: the raise alone can be
# lost. Python runs the handler in whatever the main thread executes, and an exception raised inside a finalizer
# (seen: TensorFlow's `AtomicFunction.__del__`) is printed as "Exception ignored" and dropped; the run then carried
# on and exited 0.
TERMINATED = threading.Event()


def raise_terminated(signum, frame) -> None:
    TERMINATED.set()
    raise Terminated()


def stop_if_terminated() -> None:
    """Raise Terminated if SIGTERM arrived and its exception was swallowed: called before every stage
    (`StageCache.run`); the CLI's `main` reads `TERMINATED` when its command returns."""
    if TERMINATED.is_set():
        raise Terminated()


@contextlib.contextmanager
def held(signums: tuple[int, ...] = HELD):
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    before = {s: signal.getsignal(s) for s in signums}
    before = {s: h for s, h in before.items() if h is not None}  # a handler not set from Python: left alone
    for s in before:
        signal.signal(s, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)
