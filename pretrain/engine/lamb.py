"""LAMB with timm's semantics (timm.optim.Lamb, the optimizer of DeiT III and the cosub recipe), written with
torch's multi-tensor (_foreach_*) ops: a step issues a fixed number of operators per (group, device, dtype), not
per parameter, and never waits for the device (no `.item()` of a device tensor).

Why ours (issue 17): at pretraining batch sizes a GPU step is bound by the host; timm's Lamb runs a Python loop
over the parameters where its foreach path is off (its default off CUDA, and for any tensor lr) and builds the
trust ratios by `torch.stack` + `unbind` per group either way. The update is timm's, term for term:

    m = beta1 m + (1 - beta1) g      (grad_averaging; else m = beta1 m + g)
    v = beta2 v + (1 - beta2) g^2
    u = (m / bc1) / (sqrt(v / bc2) + eps)   (bc = 1 - beta^step with bias_correction, else 1)
    u += weight_decay * p            (where weight_decay != 0: L2 added to the update, before the trust ratio)
    r = |p| / |u|, 1 where either norm is 0 (only where weight_decay != 0, unless always_adapt; min(r, 1) with
        trust_clip)
    p -= lr * r * u

As in timm's foreach path the bias corrections are folded into one scalar, scale = sqrt(bc2) / bc1:
u = scale * m / (sqrt(v) + eps sqrt(bc2)); in float16 (where eps sqrt(bc2) can underflow) they are applied to the
tensors instead. Gradient clipping is the training loop's (timm's max_grad_norm is None here; see
builders.build_optimizer).

State layout is timm's: group['step'] (a CPU tensor, one count per group, incremented at every step even where no
parameter has a gradient), state['exp_avg'] and state['exp_avg_sq'] per parameter, and the same group keys, so a
checkpoint of either optimizer resumes with the other (tests/test_lamb.py).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Dict, List, Tuple

import torch
from torch import Tensor
from torch.optim import Optimizer

# timm Lamb's group keys we do not implement, with the only value we accept: they are stored (so that timm's Lamb can
# resume from our state dict) and checked at every step (a timm checkpoint with, e.g., caution=True is refused).
FIXED_TIMM_OPTIONS = dict(max_grad_norm=None, caution=False, decoupled_decay=False, corrected_weight_decay=False)


class ForeachLamb(Optimizer):
    """timm.optim.Lamb(max_grad_norm=None) in multi-tensor ops; arguments and defaults as timm's."""

    def __init__(self, params, lr: float = 1e-3, bias_correction: bool = True, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.01, grad_averaging: bool = True, trust_clip: bool = False,
                 always_adapt: bool = False):
        for name, value in (('lr', lr), ('eps', eps), ('weight_decay', weight_decay)):
            if not value >= 0.0:
                raise ValueError(f'Lamb {name}={value}: expected a number >= 0')
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f'Lamb betas={betas}: expected two numbers in [0, 1)')
        defaults = dict(lr=lr, bias_correction=bias_correction, betas=tuple(betas), eps=eps,
                        weight_decay=weight_decay, grad_averaging=grad_averaging, trust_clip=trust_clip,
                        always_adapt=always_adapt, max_lr_snapshot=float(lr), foreach=True, **FIXED_TIMM_OPTIONS)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:  # timm stores the count as a CPU tensor; older checkpoints hold a number
            if 'step' in group and not torch.is_tensor(group['step']):
                group['step'] = torch.tensor(float(group['step']))
            elif 'step' in group:
                group['step'] = group['step'].to('cpu')

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for key, value in FIXED_TIMM_OPTIONS.items():
                if group.get(key, value) != value:
                    raise ValueError(f'ForeachLamb: parameter group {key}={group[key]!r} is not implemented '
                                     f'(expected {value!r}); use optimizer.foreach=False for timm\'s Lamb')
            if 'step' not in group:
                group['step'] = torch.tensor(0.0)
            group['step'] += 1  # timm counts every step of the group, with or without gradients
            by_device: Dict[tuple, List[List[Tensor]]] = defaultdict(lambda: ([], [], [], []))
            for p in group['params']:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError('ForeachLamb does not support sparse gradients')
                state = self.state[p]
                if not state:
                    state['exp_avg'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state['exp_avg_sq'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                lists = by_device[(p.device, p.dtype)]
                for out, t in zip(lists, (p, p.grad, state['exp_avg'], state['exp_avg_sq'])):
                    out.append(t)
            for lists in by_device.values():
                for chunk in _chunks(lists[0]):
                    _lamb_update(group, float(group['step']), *([t[i] for i in chunk] for t in lists))
        return loss


# On CPU torch runs a foreach op as a loop over its tensors, so each op streams every tensor of the list through the
# caches and all temporaries live at once: one op over a whole ViT group took ~1.5x timm's per-parameter loop
# (ViT-S, 1 thread). Lists of at most this many elements (a larger tensor alone) brought it to parity. CUDA: one list
# per group, the multi-tensor kernels' case (timm derives chunks from the L2 cache size and gets none on an H200).
CPU_CHUNK_ELEMENTS = 2 ** 16


def _chunks(params: List[Tensor]) -> List[List[int]]:
    """Consecutive index chunks of `params`: all of them off CPU, else at most CPU_CHUNK_ELEMENTS elements each."""
    if params[0].device.type != 'cpu':
        return [list(range(len(params)))]
    chunks, total = [[]], 0
    for i, p in enumerate(params):
        if chunks[-1] and total + p.numel() > CPU_CHUNK_ELEMENTS:
            chunks.append([])
            total = 0
        chunks[-1].append(i)
        total += p.numel()
    return chunks


def _lamb_update(group: dict, step: float, params: List[Tensor], grads: List[Tensor], exp_avgs: List[Tensor],
                 exp_avg_sqs: List[Tensor]) -> None:
    """One LAMB step of tensors on one device in one dtype (the formulas of the module docstring)."""
    beta1, beta2 = group['betas']
    lr, eps, weight_decay = group['lr'], group['eps'], group['weight_decay']
    bc1, bc2 = (1 - beta1 ** step, 1 - beta2 ** step) if group['bias_correction'] else (1.0, 1.0)
    if group['grad_averaging']:
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    else:
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)

    denom = torch._foreach_sqrt(exp_avg_sqs)
    if params[0].dtype == torch.float16:  # eps sqrt(bc2) may underflow: correct the tensors themselves
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, eps)
        updates = torch._foreach_div(exp_avgs, bc1)
        torch._foreach_div_(updates, denom)
        scale = 1.0
    else:
        torch._foreach_add_(denom, eps * math.sqrt(bc2))
        updates = torch._foreach_div(exp_avgs, denom)
        scale = math.sqrt(bc2) / bc1  # the true update is scale * updates
    del denom
    if weight_decay != 0:
        torch._foreach_add_(updates, params, alpha=weight_decay / scale)

    if weight_decay != 0 or group['always_adapt']:
        w_norm = torch.stack(torch._foreach_norm(params))
        u_norm = torch.stack(torch._foreach_norm(updates)) * scale
        ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
        if group['trust_clip']:
            ratio = ratio.clamp(max=1.0)
        # per-tensor step sizes stay on the device: 0-dim views of one tensor, no host sync
        torch._foreach_addcmul_(params, updates, list((ratio * (-lr * scale)).unbind(0)))
    else:
        torch._foreach_add_(params, updates, alpha=-lr * scale)
