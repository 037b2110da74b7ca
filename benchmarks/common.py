"""Measurement helpers shared by the benchmarks: FLOPs, bytes saved for backward, device description."""
from __future__ import annotations

import os
import platform
from typing import Dict

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
