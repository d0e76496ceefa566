"""How the `gpt2` command and its worker processes react to signals.

- The command: SIGTERM (what `kill`, schedulers and torchrun send) and SIGHUP (a closed
  terminal or SSH session) mean what Ctrl-C means: they raise KeyboardInterrupt, so every
  command stops the same way (`gpt2: interrupted`, exit status 130, files written atomically
  left as they were). `gpt2 train` turns all three into a save-and-stop flag instead
  (training/checkpointing.py). Once the command is stopping, a second signal ends it at once.
- Worker processes (`gpt2 prepare`'s pool): Ctrl-C in a terminal reaches every process of
  the group, but only the main process decides what happens, so workers ignore SIGINT (a
  worker interrupted while holding its result pipe's lock would leave the others waiting
  forever), take the default action on SIGTERM/SIGHUP, and die when their parent dies,
  however it dies (SIGKILL included): Linux's PR_SET_PDEATHSIG, elsewhere a thread that
  watches the parent's pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
_PR_SET_PDEATHSIG = 1
_requested: list[int] = []  # stop signals received by this process


def note_stop(signum: int) -> None:
    """Remember that a stop was asked for (by a handler that does not raise, e.g. training's flag)."""
    _requested.append(signum)


def stop_requested() -> bool:
    """Whether Ctrl-C, SIGTERM or SIGHUP reached this process: an error raised after one (an import
    cut short turns KeyboardInterrupt into ImportError) is the interruption, not a bug."""
    return bool(_requested)


def interrupt(signum: int, frame: Any) -> None:
    """The handler of SIGINT, SIGTERM and SIGHUP: remember it, raise KeyboardInterrupt.

    Not while torch is being imported: its import runs Python code called from C++ (pybind11),
    and an exception raised there aborts the whole process ("terminate called after throwing",
    exit -6) instead of unwinding; the signal is sent again every 50 ms until the import is
    done, and raises then."""
    note_stop(signum)
    if _importing("torch"):
        again = threading.Timer(0.05, signal.raise_signal, (signum,))
        again.daemon = True
        again.start()
        return
    raise KeyboardInterrupt


def _importing(name: str) -> bool:
    """Whether module `name` is being imported right now (its code still running)."""
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def interrupt_on_stop_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt (main thread only), and are remembered."""
    _requested.clear()
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, *STOP_SIGNALS):
            signal.signal(s, interrupt)


def end_on_next_signal() -> None:
    """The command is stopping: a further SIGINT, SIGTERM or SIGHUP ends it at once, quietly."""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, *STOP_SIGNALS):
            signal.signal(s, signal.SIG_DFL)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back while worker processes are forked: one that arrives
    meanwhile is recorded, not raised (a child forked now inherits that, until become_worker),
    and delivered to this process when the block ends. (Blocking them with a signal mask is not
    enough: another thread of this process may receive one and Python raises it in the main
    thread anyway, possibly inside a fork hook, which swallows it.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
                for s in (signal.SIGINT, *STOP_SIGNALS)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])


def become_worker(parent: int) -> None:
    """Signals of a worker process whose parent is `parent` (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
