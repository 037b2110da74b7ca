"""Stopping cleanly on a signal: SIGTERM / SIGUSR1 (what SLURM sends before a time limit or a preemption),
SIGINT (Ctrl-C) and, under submitit, SIGUSR2. The handler only records the signal; at a step boundary all ranks
agree to stop (an all-reduce of the flags, read one step later with the step's loss: pending.py; a single
process reads its own flag at once), write checkpoint.pth with the position inside the epoch, flush the logs and
exit with PREEMPTED_EXIT_CODE."""
from __future__ import annotations

import signal
import threading

import torch
import torch.distributed as dist

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect of a job that stopped on their signal
STOP_SIGNALS = [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT]


def also_stop_on(signum: int) -> None:
    """Stop cleanly on one more signal too (pretrain/submit.py: submitit's SIGUSR2 before a time limit)."""
    if signum not in STOP_SIGNALS:
        STOP_SIGNALS.append(signum)


class Preempted(Exception):
    """The run stopped on a signal after saving its position (exit code PREEMPTED_EXIT_CODE)."""
    exit_code = PREEMPTED_EXIT_CODE

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopRequest:
    """Context manager that turns the stop signals into a flag read at step boundaries."""

    def __init__(self):
        self.signals = tuple(STOP_SIGNALS)
        self.signum = 0
        self._previous = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def flag(self, d) -> torch.Tensor:
        """The signal any rank has received, as a device scalar all-reduced without waiting for it: the loop reads
        it with the step's other values (pending.py), so every rank reads the same value after the same step."""
        flag = torch.full((), self.signum, dtype=torch.int32, device=d.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag

    def agreed(self, d) -> int:
        """The signal any rank received (0 for none); the same answer on every rank."""
        return int(self.flag(d).item()) if d.enabled else self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
