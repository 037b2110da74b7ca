"""Stochastic depth for residual branches: efficient (ESD), classic masking, or none.

Every residual branch of every architecture in this project goes through `drop_add_residual`:
our ViT blocks call it directly, the timm architectures through the adapters in `timm_models.py`.

ESD (cosub paper, section 4): for a batch of B samples and drop rate tau, the branch runs on a random subset
of `keep = round(B * (1 - tau))` samples only and is added back with `index_add`, scaled by B / keep so that
its expectation per sample is the branch itself. Because `keep` is an integer, the rate actually applied is
`1 - keep / B` (supplement, appendix C); `effective_drop_rate` gives it and we warn when it is far off.

Speed: at the batch sizes of pretraining a GPU step is bound by the host issuing kernels, so ESD keeps the host's
work per branch small and never waits on the device. `keep` comes from the shapes alone (no `.item()`, no
data-dependent shape); the kept samples of all the branches of all the blocks are drawn with one random and one
sort kernel per forward pass, and cut into per-branch indices with one slice and one unbind for all of them
(`draw_block_kept`; a block alone draws its own branches at once), independently per branch; the gather is
`index_select` (one kernel, contiguous output, an `index_add` backward instead of the sort-based accumulation of
advanced indexing) and the B / keep scale is `index_add`'s alpha. In eager mode the branches of a block go
through `residual_chain`: one custom autograd function per branch (the scaled index_add of a branch and the gather
of the next are one function, forward and backward), no per-branch argument checks. Everything traces under
torch.compile as one graph (fullgraph=True, static or dynamic batch), where inductor fuses the gathers, the scale
and the LayerScale multiply into neighbouring kernels and CUDA graphs apply (shapes are static for a given batch).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

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
    if not 0.0 <= rate < 1.0:  # NaN fails too
        raise ValueError(f'{where}={rate}: expected a drop rate in [0, 1)')
    return rate


def _warn_quantization(batch_size: int, rate: float) -> None:
    key = (batch_size, round(rate, 6))
    if key in _warned:  # checked before (warned, or fine): one set lookup per call after the first
        return
    _warned.add(key)
    if not quantization_is_coarse(batch_size, rate):
        return
    warnings.warn(
        f'efficient stochastic depth: batch of {batch_size} at drop rate {rate:g} keeps '
        f'{keep_count(batch_size, rate)} samples, an effective rate of {effective_drop_rate(batch_size, rate):.3f}; '
        f'use a larger per-device batch or mode "mask" for exact rates', stacklevel=3)


class _ScaledIndexAdd(torch.autograd.Function):
    """`index_add(shortcut, 0, index, source, alpha=B / keep)` whose backward keeps only the index.

    torch.index_add saves `source` for backward, one branch-sized tensor per residual that masking does not
    keep (+11% activation memory on ViTs); the gradient needs only the index. The B / keep scale is index_add's
    `alpha`, read from the shapes (B = len(shortcut), keep = len(index)): no kernel of its own in the forward,
    and no scalar argument. For eager mode only: under torch.compile `drop_add_residual` traces the plain
    index_add, whose backward AOTAutograd's partitioner already reduces to the index (the derivative reads only
    `source`'s shape), and which, unlike a custom Function, traces with any dynamic-shape setting.
    """

    @staticmethod
    def forward(ctx, shortcut: Tensor, index: Tensor, source: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        return torch.index_add(shortcut, 0, index, source, alpha=shortcut.shape[0] / index.shape[0])

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return grad, None, grad.index_select(0, index).mul_(grad.shape[0] / index.shape[0])


class _GatherForResidual(torch.autograd.Function):
    """`x -> (x, x.index_select(0, index))` for a residual `x + f(x[index])`, backward in one `index_add`.

    With a plain gather, x's gradient is the sum of two: the identity path's, and a zero tensor with the
    subset's gradient added in (index_select's backward), summed by autograd: three passes over a batch-sized
    tensor and three kernels. Handing the identity path an alias of x from this function brings both gradients
    to one backward, which adds the subset's into the identity's: one index_add. Eager mode only (see
    `_ScaledIndexAdd`).
    """

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor):
        ctx.save_for_backward(index)
        ctx.batch_shape = x.shape
        return x.view_as(x), x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad_x: Optional[Tensor], grad_subset: Optional[Tensor]):
        (index,) = ctx.saved_tensors
        if grad_subset is None:
            return grad_x, None
        if grad_x is None:
            grad_x = grad_subset.new_zeros(ctx.batch_shape)
        return grad_x.index_add(0, index, grad_subset), None


class _ScaledIndexAddThenGather(torch.autograd.Function):
    """The boundary between two residual branches of a chain: `y = index_add(x, 0, added, out, alpha=B / keep)`
    (the first branch added back, as `_ScaledIndexAdd`), then `(y, y.index_select(0, gathered))` (the next
    branch's subset, as `_GatherForResidual`). The same kernels as the two functions, forward and backward, in
    one Python call each way instead of two, and no view; the backward keeps only the two indices. Eager mode
    only (see `_ScaledIndexAdd`).
    """

    @staticmethod
    def forward(ctx, x: Tensor, out: Tensor, added: Tensor, gathered: Tensor):
        ctx.save_for_backward(added, gathered)
        y = torch.index_add(x, 0, added, out, alpha=x.shape[0] / added.shape[0])
        return y, y.index_select(0, gathered)

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_subset: Optional[Tensor]):
        added, gathered = ctx.saved_tensors
        if grad_subset is not None:  # both paths of y, in one index_add (see `_GatherForResidual`)
            grad_y = grad_y.index_add(0, gathered, grad_subset)
        return grad_y, grad_y.index_select(0, added).mul_(grad_y.shape[0] / added.shape[0]), None, None


def esd_keep(batch_size: int, rate: float, mode: str, training: bool) -> Optional[int]:
    """How many samples ESD computes a branch on this step, or None when it computes it on all of them
    (evaluation, rate 0, modes other than 'esd', or a batch too small to drop anyone). Shapes only: no sync.
    The hot path: rate and mode are trusted, checked once where they are set (`set_stochastic_depth`)."""
    if not training or rate == 0.0 or mode != 'esd':
        return None
    keep = keep_count(batch_size, rate)
    if not torch.compiler.is_compiling():  # warnings.warn would break the graph; the engine logs the rate anyway
        _warn_quantization(batch_size, rate)
    return None if keep == batch_size else keep


def draw_permutations(batch_size: int, rows: int, device: torch.device) -> Tensor:
    """`rows` independent uniform random permutations of the batch: a (rows, batch_size) index.

    Each row is the argsort of i.i.d. random keys (64-bit keys make ties, which would favour low indices,
    practically impossible), so its first `keep` entries are a uniform random subset of `keep` samples, the law
    of `randperm(batch_size)[:keep]`, for any `keep`: branches with different rates share one draw. One random
    and one sort kernel for all the rows, no host sync; torch.compile traces it (its random numbers come from the
    device generator, graph-safe under CUDA graphs).
    """
    keys = torch.randint(1 << 62, (rows, batch_size), device=device)
    return keys.argsort(dim=1)


def draw_kept(batch_size: int, keep: int, draws: int, device: torch.device) -> Tensor:
    """`draws` independent uniformly random subsets of `keep` of `batch_size` samples: a (draws, keep) index."""
    return draw_permutations(batch_size, draws, device)[:, :keep]


def drop_add_residual(shortcut: Tensor, branch: Callable[..., Tensor], *inputs: Tensor, rate: float = 0.0,
                      mode: str = 'esd', training: bool = False, kept: Optional[Tensor] = None) -> Tensor:
    """Return `shortcut + branch(*inputs)` with stochastic depth over the batch (dim 0).

    `inputs` default to `(shortcut,)`; give them when the branch reads something else than the tensor it is
    added to (e.g. CaiT's class-attention reads [cls, patches] and adds to cls). In eval mode, at rate 0 or in
    mode 'none' this is exactly a plain residual. `kept`, for ESD, is this branch's row of `draw_kept` (blocks
    draw all their branches at once, see `StochasticDepthBlock.draw_kept`); without it the branch draws its own.
    Nothing is checked here (a block's forward is the hot path): `rate` and `mode` were checked where they were
    set (`set_stochastic_depth`, `create_model`), and `kept` comes from `draw_kept` / `draw_block_kept`.
    """
    inputs = inputs or (shortcut,)
    batch = shortcut.shape[0]
    if mode == 'mask' and training and rate > 0.0:  # classic per-sample Bernoulli masking, as timm's DropPath
        out = branch(*inputs)
        keep_prob = 1.0 - rate
        mask = out.new_empty((out.shape[0],) + (1,) * (out.ndim - 1)).bernoulli_(keep_prob).div_(keep_prob)
        return shortcut + out * mask
    keep = esd_keep(batch, rate, mode, training)
    if keep is None:
        return shortcut + branch(*inputs)
    if kept is None:
        kept = draw_kept(batch, keep, 1, shortcut.device)[0]
    return _esd_residual(shortcut, branch, inputs, kept)


def _esd_residual(shortcut: Tensor, branch: Callable[..., Tensor], inputs: Sequence[Tensor], kept: Tensor) -> Tensor:
    """`drop_add_residual` in ESD training: `shortcut + B/keep * branch(inputs[kept])` at
    the rows `kept`."""
    # index_select, not advanced indexing: one gather kernel, and its backward is index_add (not index_put's
    # sort-based accumulation); its output is contiguous, as the branch's kernels want
    if torch.compiler.is_compiling():  # inductor fuses the gathers, the scale and the branch's last pointwise op
        out = branch(*(t.index_select(0, kept) for t in inputs)).to(shortcut.dtype)
        return torch.index_add(shortcut, 0, kept, out, alpha=shortcut.shape[0] / kept.shape[0])
    if inputs[0] is shortcut and shortcut.requires_grad:  # the common case: one backward for both paths of x
        shortcut, subset = _GatherForResidual.apply(shortcut, kept)
        subsets = [subset] + [t.index_select(0, kept) for t in inputs[1:]]
    else:
        subsets = [t.index_select(0, kept) for t in inputs]
    out = branch(*subsets).to(shortcut.dtype)
    return _ScaledIndexAdd.apply(shortcut, kept, out)  # scaled by batch / keep, saving only `kept`


def residual_chain(x: Tensor, branches: Sequence[Callable[[Tensor], Tensor]], kept: Sequence[Optional[Tensor]],
                   rate: float = 0.0, mode: str = 'esd', training: bool = False) -> Tensor:
    """`x = x + branch(x)` for each branch in turn, with stochastic depth: the same as calling
    `drop_add_residual(x, branch, rate=..., mode=..., training=..., kept=k)` for each branch and its `kept` (this
    block's `draw_kept`: one index per branch, all None when ESD computes every sample), the same kernels and the
    same numbers. In eager ESD training the chain costs the host one autograd function per branch: the scaled
    index_add of each branch and the gather of the next are one (`_ScaledIndexAddThenGather`)."""
    if any(k is None for k in kept) or torch.compiler.is_compiling() or not x.requires_grad:
        for branch, k in zip(branches, kept):
            x = drop_add_residual(x, branch, rate=rate, mode=mode, training=training, kept=k)
        return x
    x, subset = _GatherForResidual.apply(x, kept[0])
    last = len(branches) - 1
    for i, branch in enumerate(branches):
        out = branch(subset)
        if out.dtype != x.dtype:
            out = out.to(x.dtype)
        if i == last:
            return _ScaledIndexAdd.apply(x, kept[i], out)
        x, subset = _ScaledIndexAddThenGather.apply(x, out, kept[i], kept[i + 1])
    return x  # no branches


class StochasticDepthBlock(nn.Module):
    """Mixin for blocks whose residual branches go through `drop_add_residual`.

    `set_stochastic_depth` finds blocks by this type and sets their rate and mode. Blocks with
    `scheduled = False` (class-attention blocks of CaiT/XCiT, which their authors never drop: a sample could
    lose all image information in its class token) get rate 0 from a model-wide rate.

    Activation checkpointing (`set_grad_checkpointing`, timm's --grad-checkpointing) is per block, here, for
    every architecture: a block with `grad_checkpointing` keeps only its inputs and recomputes its activations
    in backward. The recomputation draws exactly the drops of the forward: indices drawn outside the block
    (our ViTs: `draw_block_kept`) are inputs of the checkpointed call, and a block drawing its own (timm's
    families, masking's masks) is rerun from the RNG state it started from (torch.utils.checkpoint's
    preserve_rng_state, on the CPU and the inputs' device); the RNG after the block is the same as without
    checkpointing, so the run trains the same weights.
    """
    drop_path_rate: float = 0.0
    drop_path_mode: str = 'esd'
    scheduled: bool = True
    branches: int = 1  # residual branches per block, for `draw_block_kept`
    grad_checkpointing: bool = False  # set by `set_grad_checkpointing`

    def __call__(self, *args, **kwargs):
        if self.grad_checkpointing and torch.is_grad_enabled():  # nothing to keep for backward otherwise
            # the whole call (forward hooks too, e.g. FSDP's, which skip their work during the recomputation)
            return checkpoint(super().__call__, *args, use_reentrant=False, **kwargs)
        return super().__call__(*args, **kwargs)

    def draw_kept(self, x: Tensor, branches: int) -> Sequence[Optional[Tensor]]:
        """The kept-sample indices of this block's `branches` residual branches for the batch `x`, drawn at
        once (independently per branch), or Nones where ESD computes every sample (see `esd_keep`). A model
        whose blocks all see one batch draws for all of them at once instead (`draw_block_kept`)."""
        keep = esd_keep(x.shape[0], self.drop_path_rate, self.drop_path_mode, self.training)
        if keep is None:
            return (None,) * branches
        return draw_permutations(x.shape[0], branches, x.device)[:, :keep].unbind(0)

    def residual(self, shortcut: Tensor, branch: Callable[..., Tensor], *inputs: Tensor,
                 kept: Optional[Tensor] = None) -> Tensor:
        return drop_add_residual(shortcut, branch, *inputs, rate=self.drop_path_rate, mode=self.drop_path_mode,
                                 training=self.training, kept=kept)

    def residuals(self, x: Tensor, *branches: Callable[[Tensor], Tensor],
                  kept: Optional[Sequence[Optional[Tensor]]] = None) -> Tensor:
        """`x + branch(x)` for each of this block's branches in turn, each reading the tensor it is added to
        (`residual_chain`); `kept`: their indices from a model-wide draw (`draw_block_kept`), else drawn here."""
        if kept is None:
            kept = self.draw_kept(x, len(branches))
        return residual_chain(x, branches, kept, rate=self.drop_path_rate, mode=self.drop_path_mode,
                              training=self.training)


def _block_keeps(blocks: Sequence[StochasticDepthBlock], batch_size: int) -> Tuple[List[Optional[int]], int]:
    """Each block's ESD `keep` (None: it computes every sample) and the number of permutation rows the active
    ones need, one per branch. `esd_keep` runs once per distinct (rate, mode, training), not once per block."""
    known: Dict[tuple, Optional[int]] = {}
    keeps = []
    for block in blocks:
        key = (block.drop_path_rate, block.drop_path_mode, block.training)
        if key not in known:
            known[key] = esd_keep(batch_size, *key)
        keeps.append(known[key])
    return keeps, sum(b.branches for b, k in zip(blocks, keeps) if k is not None)


def draw_block_kept(blocks: Sequence[StochasticDepthBlock], x: Tensor) -> List[Tuple[Optional[Tensor], ...]]:
    """Each block's `draw_kept` (one index per branch, Nones for the blocks that compute every sample) for a
    model whose blocks all see the batch `x`: one random and one sort kernel per forward pass for all the
    blocks (rows of one draw, independent per branch), then one slice and one unbind per distinct keep (one for
    a uniform rate): no tensor op per block."""
    keeps, rows = _block_keeps(blocks, x.shape[0])
    if not rows:
        return [(None,) * b.branches for b in blocks]
    permutations = draw_permutations(x.shape[0], rows, x.device)
    indices = {keep: permutations[:, :keep].unbind(0) for keep in set(keeps) - {None}}
    out, start = [], 0
    for block, keep in zip(blocks, keeps):
        if keep is None:
            out.append((None,) * block.branches)
        else:
            out.append(indices[keep][start:start + block.branches])
            start += block.branches
    return out


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


def set_grad_checkpointing(model: nn.Module, enable: bool = True) -> int:
    """Activation checkpointing per residual block (see `StochasticDepthBlock`) for every block of `model`, ours
    and timm's families alike (PiT's timm model has none of its own); returns the number of blocks."""
    blocks = stochastic_depth_blocks(model)
    for block in blocks:
        block.grad_checkpointing = enable
    return len(blocks)


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

