"""A step's outcome (loss, gradient norm, agreed stop signal) on its way to the host, read one step later.

Reading a device value (`.item()`) makes the host wait for every kernel queued before it: read at once, the host
could never queue step N + 1 while the device still runs step N, and a step bound by the host launching kernels
(ViT steps with ESD at pretraining batch sizes, benchmarks/results/esd_cuda.md) leaves the device idle while the
host issues the next one. So the loop copies the values into pinned host memory without waiting, queues the next
step, and only then reads them: the host waits for the end of the previous step, never for the current one.
Whatever decides on them (the non-finite stop, the logs, a signal under DDP) runs one step late; the loop drains
the pending step before it writes a checkpoint, so a checkpoint never holds a step whose loss was not checked.
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor


class PendingStep:
    """Scalars of one optimizer step, copied to the host without blocking; `values()` waits for them only."""

    def __init__(self, epoch: int, step: int, lr: float, values: List[Tensor], bad_images: int):
        self.epoch, self.step, self.lr, self.bad = epoch, step, lr, bad_images  # counted when the step is
        stats = torch.stack([v.detach().reshape(()).to(torch.float64) for v in values])
        self._ready = None
        if stats.is_cuda:  # a copy engine moves it after the kernels before it; the event says when it is there
            self._host = torch.empty(stats.shape, dtype=stats.dtype, pin_memory=True)
            self._host.copy_(stats, non_blocking=True)
            self._ready = torch.cuda.Event()
            self._ready.record()
        else:  # CPU tensors are computed when they are returned
            self._host = stats

    def values(self) -> List[float]:
        if self._ready is not None:
            self._ready.synchronize()
        return self._host.tolist()
