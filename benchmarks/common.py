"""Measurement helpers shared by the benchmarks: FLOPs, bytes saved for backward, device description."""
from __future__ import annotations

import os
import platform
import time
from typing import Callable, Dict

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def flop_counter() -> FlopCounterMode:
    """torch's counter, plus the CPU fused-attention kernels it does not know (same cost as the GPU ones)."""
    return FlopCounterMode(display=False, custom_mapping={  # the counter passes shapes to these
        aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda grad, q, k, v, *_, **__: sdpa_backward_flop_count(grad, q, k, v)})


class SavedForBackward:
    """Bytes of the distinct storages autograd keeps for backward, parameters excluded."""

    def __init__(self, model: nn.Module):
        self.parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: Dict[int, int] = {}
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        # saved tensors stay alive until backward, so their addresses are unique during the forward pass
        if storage.data_ptr() not in self.parameters:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def __enter__(self):
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self.hooks.__exit__(*exc)


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), model)
    except OSError:
        pass
    return f'CPU: {model}, {os.cpu_count()} cores, {torch.get_num_threads()} threads used'


def counted(model: nn.Module, step: Callable[[], None]) -> dict:
    """FLOPs and bytes saved for backward of one call of `step` (forward + backward of `model`)."""
    with flop_counter() as flops, SavedForBackward(model) as saved:
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return dict(flops=flops.get_total_flops(), activation_bytes=saved.bytes)


def timed(step: Callable[[], None], cuda: bool) -> dict:
    """Wall time of one call of `step`; on CUDA also its peak memory above what was allocated before."""
    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
    out = dict(time=time.perf_counter() - start)
    if cuda:
        out['peak_bytes'] = torch.cuda.max_memory_allocated() - before
    return out
