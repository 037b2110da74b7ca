"""Submodel co-training loss (cosub paper, equation 2; supplement appendix D for more than two submodels).

The model sees the augmented batch repeated `num_submodels` times in one forward pass; stochastic depth draws
an independent set of blocks for every row, so rows i, i + B, i + 2B, ... are different submodels applied to
the same image. Each submodel learns from the label (weight lam) and from the other submodels' predictions
(weight 1 - lam, teacher side without gradient):

    L = lam * mean_j L(z_j, y) + (1 - lam) * mean_{i != j} L(z_i, sg(z_j))

over the k(k - 1) ordered pairs. With k = 1 and lam = 1 this is the plain DeiT III loss.

The other training strategies of the paper's Table 4 / Figure 2 use the same two terms (pretrain/methods.py):
knowledge distillation (`kd_loss`: the teacher is a frozen pre-trained model, or the EMA of the weights for the
mean teacher), co-training of two separate models (`cosub_loss` over their two predictions) and KD + cosub
(`kd_cosub_loss`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ('bce', 'ce')


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


def _teacher_term(student: Tensor, teacher: Tensor, loss: str, target: str, temperature: float) -> Tensor:
    """An outside teacher's term: 'soft', its probabilities in the run's loss family (as cosub's submodels: sigmoid
    for BCE, softmax for CE), both sides at `temperature` and scaled by its square (Hinton et al.; DeiT's
    --distillation-tau, default 1.0); 'hard', its argmax as a one-hot label (DeiT's hard distillation, the paper's
    [50]: "combines the predicted label of the teacher with the image label")."""
    if target == 'hard':
        return _distill_loss(student, _teacher_target(teacher, loss, soft=False), loss)
    t = float(temperature)
    return t * t * _distill_loss(student / t, _teacher_target(teacher / t, loss, soft=True), loss)


KD_TARGETS = ('hard', 'soft')
KD_MIXES = ('peer', 'label')  # how kd_cosub_loss adds the teacher to eq. 2


def kd_loss(logits: Tensor, target: Tensor, teacher_logits: Tensor, *, kd_target: str, lam: float = 0.5,
            loss: str = 'bce', temperature: float = 1.0) -> Tensor:
    """Knowledge distillation (Table 4 (b); (c) with the EMA model as teacher), for `logits` (B, C) of the student,
    `target` (B, C) and `teacher_logits` (B, C) of the teacher on the same augmented images:

        L = lam * L(z, y) + (1 - lam) * L(z, sg(t))
    """
    if logits.shape != target.shape or teacher_logits.shape != logits.shape:
        raise ValueError(f'student logits {tuple(logits.shape)}, targets {tuple(target.shape)} and teacher logits '
                         f'{tuple(teacher_logits.shape)} differ')
    z, teacher = logits.float(), teacher_logits.detach().float()
    return lam * _label_loss(z, target.float(), loss) + (1.0 - lam) * _teacher_term(z, teacher, loss, kd_target,
                                                                                    temperature)


def kd_cosub_loss(logits: Tensor, target: Tensor, teacher_logits: Tensor, *, kd_target: str, mix: str = 'peer',
                  num_submodels: int = 2, lam: float = 0.5, kd_lam: float = 0.5, loss: str = 'bce',
                  soft: bool = True, temperature: float = 1.0) -> Tensor:
    """KD + cosub (Table 4, last row). The paper gives no formula for it ("our approach is complementary with
    KD"): both forms here are our reconstructions.

    mix='peer' (our default): the pre-trained teacher joins the other submodels as one more teacher of each
    submodel, with the same weight as each of them:

        L = lam * mean_i L(z_i, y) + (1 - lam) * mean_i [ (sum_{j != i} L(z_i, sg(z_j)) + L(z_i, sg(t))) / k ]

    Why: it keeps lam the label/distillation balance of both cosub and KD (lam = 0.5 in Table 4 for both), so
    lam = 1 is the plain baseline again; with k = 2 each submodel learns half of its distillation from the other
    submodel and half from the teacher; and it needs no weight the paper does not give.

    mix='label': DeiT's distillation inside eq. 2's label term, the label mixed with the teacher's target as KD
    alone does it (weight kd_lam on the label), the co-training term unchanged:

        L = lam * mean_i [ kd_lam L(z_i, y) + (1 - kd_lam) L(z_i, sg(t)) ] + (1 - lam) * mean_{i != j} L(z_i, sg(z_j))
    """
    k = int(num_submodels)
    if teacher_logits.shape[0] * k != logits.shape[0] or teacher_logits.shape[-1] != logits.shape[-1]:
        raise ValueError(f'teacher logits {tuple(teacher_logits.shape)} do not match {k} submodels x logits '
                         f'{tuple(logits.shape)}')
    if mix == 'label':
        z = logits.reshape(k, teacher_logits.shape[0], -1)
        label = sum(kd_loss(z[i], target, teacher_logits, kd_target=kd_target, lam=kd_lam, loss=loss,
                            temperature=temperature) for i in range(k)) / k
        peers = cosub_loss(logits, target, num_submodels=k, lam=0.0, loss=loss, soft=soft)  # eq. 2's second term
        return lam * label + (1.0 - lam) * peers
    teacher = teacher_logits.detach().float()
    z = logits.float().reshape(k, teacher.shape[0], -1)
    target = target.float()
    label = sum(_label_loss(z[i], target, loss) for i in range(k)) / k
    peers = [_teacher_target(z[j], loss, soft) for j in range(k)]
    distill = sum(sum(_distill_loss(z[i], peers[j], loss) for j in range(k) if j != i)
                  + _teacher_term(z[i], teacher, loss, kd_target, temperature) for i in range(k)) / (k * k)
    return lam * label + (1.0 - lam) * distill


def cosub_loss(logits: Tensor, target: Tensor, *, num_submodels: int = 2, lam: float = 0.5, loss: str = 'bce',
               soft: bool = True) -> Tensor:
    """cosub loss for `logits` (k*B, C) of the batch repeated k times and `target` (B, C) of the unique samples.

    loss: 'bce' (binary cross-entropy, mixed label targets binarised as in DeiT III) or 'ce' (soft-target
    cross-entropy). soft: teacher targets are the other submodel's probabilities (True) or its argmax (False).
    """
    k = int(num_submodels)
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
