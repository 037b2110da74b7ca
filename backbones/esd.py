"""Stochastic depth for residual branches: efficient (ESD), classic masking, or none.

Every residual branch of every architecture in this project goes through `drop_add_residual`:
our ViT blocks call it directly, the timm architectures through the adapters in `timm_models.py`.

ESD (cosub paper, section 4): for a batch of B samples and drop rate tau, the branch runs on a random subset
of `keep = round(B * (1 - tau))` samples only and is added back with `index_add`, scaled by B / keep so that
its expectation per sample is the branch itself. Because `keep` is an integer, the rate actually applied is
`1 - keep / B` (supplement, appendix C); `effective_drop_rate` gives it and we warn when it is far off.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, List, Sequence

import torch
from torch import Tensor, nn

MODES = ('esd', 'mask', 'none')
SCHEDULES = ('uniform', 'linear')

# Relative tolerance between requested and effective rate before we warn (absolute floor below).
_WARN_REL, _WARN_ABS = 0.1, 0.01
_warned: set = set()


def keep_count(batch_size: int, rate: float) -> int:
    """Number of samples whose branch is computed: B(1 - rate) rounded half up, at least 1 (see module doc)."""
    return min(batch_size, max(1, math.floor(batch_size * (1.0 - rate) + 0.5)))


def effective_drop_rate(batch_size: int, rate: float) -> float:
    """The drop rate ESD really applies for this batch size (supplement, eq. C.1 and figure C.1)."""
    if rate <= 0.0 or batch_size <= 0:
        return 0.0
    return 1.0 - keep_count(batch_size, rate) / batch_size


def quantization_is_coarse(batch_size: int, rate: float) -> bool:
    """True when the effective rate is further than 10% (and 0.01) from the requested one."""
    return abs(effective_drop_rate(batch_size, rate) - rate) > max(_WARN_ABS, _WARN_REL * rate)


def check_rate(rate: float, where: str = 'drop_path_rate') -> float:
    rate = float(rate)
    if not (0.0 <= rate < 1.0) or math.isnan(rate):
        raise ValueError(f'{where}={rate}: expected a drop rate in [0, 1)')
    return rate


def _warn_quantization(batch_size: int, rate: float) -> None:
    key = (batch_size, round(rate, 6))
    if key in _warned or not quantization_is_coarse(batch_size, rate):
        return
    _warned.add(key)
    warnings.warn(
        f'efficient stochastic depth: batch of {batch_size} at drop rate {rate:g} keeps '
        f'{keep_count(batch_size, rate)} samples, an effective rate of {effective_drop_rate(batch_size, rate):.3f}; '
        f'use a larger per-device batch or mode "mask" for exact rates', stacklevel=3)


class _ScaledIndexAdd(torch.autograd.Function):
    """`index_add(shortcut, 0, index, source, alpha)` whose backward keeps only the index.

    torch.index_add saves `source` for backward, one branch-sized tensor per residual that masking does not
    keep (+11% activation memory on ViTs); the gradient needs only the index.
    """

    @staticmethod
    def forward(ctx, shortcut: Tensor, index: Tensor, source: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(index)
        ctx.alpha = alpha
        return torch.index_add(shortcut, 0, index, source, alpha=alpha)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return grad, None, grad.index_select(0, index) * ctx.alpha, None


def drop_add_residual(shortcut: Tensor, branch: Callable[..., Tensor], *inputs: Tensor, rate: float = 0.0,
                      mode: str = 'esd', training: bool = False) -> Tensor:
    """Return `shortcut + branch(*inputs)` with stochastic depth over the batch (dim 0).

    `inputs` default to `(shortcut,)`; give them when the branch reads something else than the tensor it is
    added to (e.g. CaiT's class-attention reads [cls, patches] and adds to cls). In eval mode, at rate 0 or in
    mode 'none' this is exactly a plain residual.
    """
    inputs = inputs or (shortcut,)
    if mode not in MODES:
        raise ValueError(f'drop_path_mode={mode!r}: expected one of {MODES}')
    if not training or rate == 0.0 or mode == 'none':
        return shortcut + branch(*inputs)
    check_rate(rate)
    if mode == 'mask':  # classic per-sample Bernoulli masking, as timm's DropPath
        out = branch(*inputs)
        keep_prob = 1.0 - rate
        mask = out.new_empty((out.shape[0],) + (1,) * (out.ndim - 1)).bernoulli_(keep_prob).div_(keep_prob)
        return shortcut + out * mask
    batch = shortcut.shape[0]
    keep = keep_count(batch, rate)
    _warn_quantization(batch, rate)
    if keep == batch:
        return shortcut + branch(*inputs)
    kept = torch.randperm(batch, device=shortcut.device)[:keep]
    out = branch(*(t[kept] for t in inputs))
    return _ScaledIndexAdd.apply(shortcut, kept, out.to(shortcut.dtype), batch / keep)


class StochasticDepthBlock(nn.Module):
    """Mixin for blocks whose residual branches go through `drop_add_residual`.

    `set_stochastic_depth` finds blocks by this type and sets their rate and mode. Blocks with
    `scheduled = False` (class-attention blocks of CaiT/XCiT, which their authors never drop: a sample could
    lose all image information in its class token) get rate 0 from a model-wide rate.
    """
    drop_path_rate: float = 0.0
    drop_path_mode: str = 'esd'
    scheduled: bool = True

    def residual(self, shortcut: Tensor, branch: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
        return drop_add_residual(shortcut, branch, *inputs, rate=self.drop_path_rate, mode=self.drop_path_mode,
                                 training=self.training)


def drop_rates(rate: float, depth: int, schedule: str = 'uniform') -> List[float]:
    """Per-block rates: the same everywhere (DeiT III, cosub) or rising linearly to `rate` (original SD)."""
    rate = check_rate(rate)
    if schedule == 'uniform':
        return [rate] * depth
    if schedule == 'linear':
        return [rate * i / max(depth - 1, 1) for i in range(depth)]
    raise ValueError(f'drop_path_schedule={schedule!r}: expected one of {SCHEDULES}')


def stochastic_depth_blocks(model: nn.Module) -> List[StochasticDepthBlock]:
    """The model's stochastic-depth blocks in forward (registration) order."""
    return [m for m in model.modules() if isinstance(m, StochasticDepthBlock)]


def set_stochastic_depth(model: nn.Module, rate: float | Sequence[float] | None = None, mode: str | None = None,
                         schedule: str = 'uniform') -> List[float]:
    """Set the drop rate (a number with a schedule, or one rate per block) and/or mode of every block."""
    blocks = stochastic_depth_blocks(model)
    if mode is not None:
        if mode not in MODES:
            raise ValueError(f'drop_path_mode={mode!r}: expected one of {MODES}')
        for block in blocks:
            block.drop_path_mode = mode
    if isinstance(rate, (int, float)):
        scheduled = iter(drop_rates(rate, sum(b.scheduled for b in blocks), schedule))
        rate = [next(scheduled) if b.scheduled else 0.0 for b in blocks]
    if rate is not None:
        rates = list(rate)
        if len(rates) != len(blocks):
            raise ValueError(f'got {len(rates)} drop rates for {len(blocks)} stochastic-depth blocks')
        for block, r in zip(blocks, rates):
            block.drop_path_rate = check_rate(r)
    return [b.drop_path_rate for b in blocks]


def esd_report(model: nn.Module, batch_size: int) -> List[dict]:
    """Requested vs effective rate for each distinct rate in the model, at this per-device batch size."""
    rows, seen = [], set()
    for block in stochastic_depth_blocks(model):
        r = block.drop_path_rate
        if r in seen:
            continue
        seen.add(r)
        rows.append(dict(rate=r, batch=batch_size, keep=keep_count(batch_size, r) if r > 0 else batch_size,
                         effective=effective_drop_rate(batch_size, r), coarse=quantization_is_coarse(batch_size, r)))
    return rows

