"""Stopping a trainer by SIGINT or SIGTERM without losing its work.

While a trainer runs (``stop_on_signals``), SIGINT (Ctrl-C) and SIGTERM do not end the process at once: they ask
the running loop to stop, and the loop, at the end of its current step, writes its checkpoint and raises
``Interrupted`` (a KeyboardInterrupt). Calling the trainer again with resume=True (``--resume``) continues from the
checkpoints. A second signal while the first is being served stops at once (a plain KeyboardInterrupt; the
checkpoints, always written whole, are those of before).
"""
import signal
import threading
from contextlib import contextmanager

import torch
import torch.distributed as dist

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A trainer stopped by a signal after writing its checkpoints; ``exit_status`` is the shell's for that signal
    (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name} after writing the checkpoints; call again with "
                         "resume=True (--resume) to continue")

    @property
    def exit_status(self):
        """128 + the signal number, as a shell reports a process the signal ended."""
        return 128 + self.signum


class _Requests:
    signum = None  # the first signal received while a trainer runs, or None


_requests = _Requests()


@contextmanager
def stop_on_signals():
    """SIGINT and SIGTERM, inside, ask the loops to stop at their next step boundary (``stop_requested``). Outside
    the main thread, where Python cannot take signals, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request(signum, frame):
        if _requests.signum is not None:
            raise KeyboardInterrupt  # the second signal: stop now
        _requests.signum = signum

    previous = {signum: signal.signal(signum, request) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requests.signum = None


def stop_requested(runtime=None):
    """The signal number of a stop request, or 0. With a distributed ``runtime`` every process gets the same
    answer (the largest of theirs, one all_reduce): processes that train together stop at the same step."""
    signum = _requests.signum or 0
    if runtime is not None and runtime.distributed:
        flag = torch.tensor([signum], device=runtime.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        signum = int(flag)
    return signum


def raise_if_stopped():
    """Raise Interrupted when a stop was requested (for loops with nothing to write)."""
    signum = stop_requested()
    if signum:
        raise Interrupted(signum)
