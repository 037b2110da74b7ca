"""Submodel co-training loss (cosub paper, equation 2; supplement appendix D for more than two submodels).

The model sees the augmented batch repeated `num_submodels` times in one forward pass; stochastic depth draws
an independent set of blocks for every row, so rows i, i + B, i + 2B, ... are different submodels applied to
the same image. Each submodel learns from the label (weight lam) and from the other submodels' predictions
(weight 1 - lam, teacher side without gradient):

    L = lam * mean_j L(z_j, y) + (1 - lam) * mean_{i != j} L(z_i, sg(z_j))

over the k(k - 1) ordered pairs. With k = 1 and lam = 1 this is the plain DeiT III loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ('bce', 'ce')


class LossConfigError(ValueError):
    """A loss configuration that would train something other than what it says."""


def check_loss_config(loss_type: str, label_smoothing: float) -> None:
    """Refuse `loss.type='bce'` with `loss.label_smoothing > 0`: the BCE recipe binarises the target (> 0), so
    smoothing would make every class a positive. DeiT III's BCE runs use --smoothing 0.0."""
    if loss_type not in LOSSES:
        raise LossConfigError(f'loss.type={loss_type!r}: expected one of {LOSSES}')
    if loss_type == 'bce' and label_smoothing > 0:
        raise LossConfigError(f"loss.type='bce' with loss.label_smoothing={label_smoothing}: BCE binarises its "
                              "targets, so smoothing would make every class positive; set loss.label_smoothing=0 "
                              "(DeiT III's BCE recipe) or loss.type='ce'")


def _label_loss(logits: Tensor, target: Tensor, loss: str) -> Tensor:
    if loss == 'bce':
        # DeiT III BCE recipe: every class present in the mixed target counts as positive.
        return F.binary_cross_entropy_with_logits(logits, target.gt(0.0).to(logits.dtype))
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


def _teacher_target(logits: Tensor, loss: str, soft: bool) -> Tensor:
    logits = logits.detach()
    if not soft:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    return torch.sigmoid(logits) if loss == 'bce' else torch.softmax(logits, dim=-1)


def _distill_loss(student: Tensor, teacher: Tensor, loss: str) -> Tensor:
    if loss == 'bce':
        return F.binary_cross_entropy_with_logits(student, teacher)
    return torch.sum(-teacher * F.log_softmax(student, dim=-1), dim=-1).mean()


def cosub_loss(logits: Tensor, target: Tensor, *, num_submodels: int = 2, lam: float = 0.5, loss: str = 'bce',
               soft: bool = True) -> Tensor:
    """cosub loss for `logits` (k*B, C) of the batch repeated k times and `target` (B, C) of the unique samples.

    loss: 'bce' (binary cross-entropy, mixed label targets binarised as in DeiT III) or 'ce' (soft-target
    cross-entropy). soft: teacher targets are the other submodel's probabilities (True) or its argmax (False).
    """
    if loss not in LOSSES:
        raise ValueError(f'loss={loss!r}: expected one of {LOSSES}')
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f'lam={lam}: expected a weight in [0, 1]')
    k = int(num_submodels)
    if k < 1 or (k == 1 and lam != 1.0):
        raise ValueError(f'num_submodels={num_submodels} with lam={lam}: co-training needs at least 2 submodels '
                         '(use lam=1 for the plain baseline)')
    if logits.shape[0] != k * target.shape[0] or logits.shape[-1] != target.shape[-1]:
        raise ValueError(f'logits {tuple(logits.shape)} do not match {k} submodels x targets {tuple(target.shape)}')
    logits = logits.float()  # losses in fp32 under autocast
    target = target.float()
    z = logits.reshape(k, target.shape[0], -1)
    total = lam * sum(_label_loss(z[j], target, loss) for j in range(k)) / k
    if lam < 1.0:
        pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
        teachers = [_teacher_target(z[j], loss, soft) for j in range(k)]
        total = total + (1.0 - lam) * sum(_distill_loss(z[i], teachers[j], loss) for i, j in pairs) / len(pairs)
    return total
