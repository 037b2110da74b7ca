"""Distributed setup: torchrun's environment, the global batch split over devices, DDP / FSDP wrapping and the
collectives the loop needs. Every rank reads its share of one global sample order (data.GlobalOrderSampler),
so results do not depend on the GPU count."""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from backbones.esd import stochastic_depth_blocks

from .errors import TrainingError


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = 'auto') -> Dist:
    """Read torchrun's environment; NCCL on GPUs, gloo on CPUs."""
    world_size = int(os.environ.get('WORLD_SIZE', 1))
    rank, local_rank = int(os.environ.get('RANK', 0)), int(os.environ.get('LOCAL_RANK', 0))
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise TrainingError(f'device={device!r} but no CUDA GPU is available (use --device cpu)')
        dev = torch.device('cuda', local_rank)
        torch.cuda.set_device(dev)
    else:  # 'cpu': the config's check (pretrain/config.py SETTINGS) lets nothing else through
        dev = torch.device('cpu')
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group('nccl' if dev.type == 'cuda' else 'gloo')
    return Dist(rank, world_size, local_rank, dev)


def split_global_batch(global_batch: int, world_size: int, micro_batch_size: Optional[int]) -> Tuple[int, int]:
    """Global batch -> (per-device micro-batch, gradient-accumulation steps); micro None = one step per device."""
    micro = micro_batch_size or global_batch // world_size
    if micro < 1 or global_batch % (world_size * micro):
        raise TrainingError(f'batch_size={global_batch} cannot be split into {world_size} device(s) x '
                            f'micro_batch_size={micro} x an integer number of accumulation steps')
    return int(micro), global_batch // (world_size * micro)


def all_reduce_sum(values: list, d: Dist) -> list:
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == 'cuda' else 'cpu')
    if d.enabled:
        dist.all_reduce(t)
    return t.tolist()


# torch.compile's modes; 'reduce-overhead' and 'max-autotune' add CUDA graphs (on CUDA devices only)
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')


def wrap_model(model: nn.Module, d: Dist, fsdp: bool, compile: bool, compile_mode: str) -> nn.Module:
    """The module the loop calls: FSDP-sharded per residual block (in place) or DDP-wrapped, then compiled.

    Compiled, the whole model is one graph (ESD included: backbones/esd.py traces without breaks), so with CUDA
    graphs a step is a few graph launches instead of thousands of kernel launches; the loop marks each forward
    as a new CUDA-graph iteration. Evaluation runs the uncompiled model (other shapes, no recompilation)."""
    if fsdp:  # in place: the model becomes the sharded module
        from torch.distributed.fsdp import fully_shard
        for block in stochastic_depth_blocks(model):
            fully_shard(block)
        for member in getattr(model, 'models', ()):  # co-training's two models: each evaluated on its own
            fully_shard(member)
        fully_shard(model)
    if d.enabled and not fsdp:
        ids = [d.local_rank] if d.device.type == 'cuda' else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if compile:  # after DDP: torch.compile then splits the graph at DDP's buckets, so gradients are all-reduced
        # while the backward goes on (DDP inside a compiled model would only see the graph's gradients at its end)
        model = torch.compile(model, mode=compile_mode)
        logging.getLogger('cosub').info('model compiled: torch.compile(mode=%r)%s', compile_mode,
                                        ', around DDP' if d.enabled and not fsdp else '')
    return model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, train_model: nn.Module, d: Dist, fsdp: bool, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
    if sync or not d.enabled:
        yield
    elif fsdp:
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        with train_model.no_sync():
            yield
