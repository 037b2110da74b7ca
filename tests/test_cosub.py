"""The cosub loss against equation (2) of the paper, written out by hand."""
import math

import pytest
import torch

from pretrain.cosub import cosub_loss


def bce(z, t):  # mean binary cross-entropy with logits, element by element
    p = torch.sigmoid(z)
    return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()


def ce(z, t):
    return -(t * torch.log_softmax(z, -1)).sum(-1).mean()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    z1, z2, z3 = (torch.randn(4, 5, generator=g, dtype=torch.float64) for _ in range(3))
    target = torch.tensor([[0.7, 0.3, 0, 0, 0], [0, 1.0, 0, 0, 0], [0, 0, 0.4, 0, 0.6], [0, 0, 0, 1.0, 0]],
                          dtype=torch.float64)
    return z1, z2, z3, target


def test_equation_2_bce_soft(batch):
    z1, z2, _, t = batch
    lam = 0.3
    y = (t > 0).double()  # DeiT III binarises the mixed target for BCE
    expected = lam * (bce(z1, y) + bce(z2, y)) / 2 + (1 - lam) * (
        bce(z1, torch.sigmoid(z2)) + bce(z2, torch.sigmoid(z1))) / 2
    got = cosub_loss(torch.cat([z1, z2]), t, lam=lam, loss='bce')
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-6)


def test_equation_2_ce_hard(batch):
    z1, z2, _, t = batch
    hard = lambda z: torch.nn.functional.one_hot(z.argmax(-1), 5).double()  # noqa: E731
    expected = 0.5 * (ce(z1, t) + ce(z2, t)) / 2 + 0.5 * (ce(z1, hard(z2)) + ce(z2, hard(z1))) / 2
    got = cosub_loss(torch.cat([z1, z2]), t, loss='ce', soft=False)
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-6)


def test_three_submodels_average_six_ordered_pairs(batch):
    z1, z2, z3, t = batch
    zs = [z1, z2, z3]
    label = sum(ce(z, t) for z in zs) / 3
    pairs = [ce(zs[i], torch.softmax(zs[j], -1)) for i in range(3) for j in range(3) if i != j]
    expected = 0.5 * label + 0.5 * sum(pairs) / 6
    got = cosub_loss(torch.cat(zs), t, num_submodels=3, loss='ce')
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-6)


def test_teacher_side_gets_no_gradient(batch):
    z1, z2, _, t = batch
    z1 = z1.clone().requires_grad_()
    z2 = z2.clone().requires_grad_()
    # Only the co-training term (lam = 0): d/dz1 of BCE(z1, sg(sigmoid(z2))) / 2 = (sigmoid(z1) - sigmoid(z2)) / (2N)
    cosub_loss(torch.cat([z1, z2]), t, lam=0.0).backward()
    n = z1.numel()
    assert torch.allclose(z1.grad, (torch.sigmoid(z1) - torch.sigmoid(z2)).detach() / (2 * n))


def test_baseline_is_plain_label_loss(batch):
    z1, _, _, t = batch
    assert math.isclose(cosub_loss(z1, t, num_submodels=1, lam=1.0, loss='ce').item(), ce(z1, t).item(),
                        rel_tol=1e-9)


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_submodels=3), 'do not match 3 submodels'),  # the settings (loss, lam, k) are checked at the edge
])
def test_bad_arguments(batch, kwargs, match):
    z1, z2, _, t = batch
    with pytest.raises(ValueError, match=match):
        cosub_loss(torch.cat([z1, z2]) if kwargs.get('num_submodels', 2) != 1 else z1, t, **kwargs)
