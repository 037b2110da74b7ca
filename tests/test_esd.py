"""Efficient stochastic depth (`backbones.esd`) and our DeiT III ViT: expectation, gradients, exactness, FLOPs,
rate quantization (supplement, appendix C), schedules and argument checks."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from backbones import (create_model, drop_add_residual, effective_drop_rate, esd_report, keep_count,
                       set_stochastic_depth, stochastic_depth_blocks)
from backbones import esd

aten = torch.ops.aten


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(autouse=True)
def fresh_quantization_warnings(monkeypatch):
    """esd warns once per (batch, rate); give every test its own memory of what was warned."""
    monkeypatch.setattr(esd, '_warned', set())


def positive_branch(t: torch.Tensor) -> torch.Tensor:
    return 1.0 + t.abs()  # never 0, so (out - shortcut) / branch tells how each row was scaled


# -- expectation ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['esd', 'mask'])
@pytest.mark.parametrize('rate', [0.2, 0.5, 0.33])
def test_expectation_equals_plain_residual(mode, rate):
    """E[out] = shortcut + branch, per sample, for both modes; 0.33 at B=10 is quantized (keep 7 of 10).

    Per sample, (out - x) / f is s * I with I a Bernoulli(p) draw shared by the row's columns: p = keep/B and
    s = B/keep for ESD, p = 1 - rate and s = 1/p for masking. So each draw has mean 1 and variance (1 - p)/p,
    and the mean of N draws has standard error sqrt((1 - p)/(p N)). We allow 4.5 standard errors on each of
    the 10 samples (a false alarm has probability ~1e-4, and the seed is fixed). A wrong ESD scale of
    1/(1 - rate) instead of B/keep at rate 0.33 is a 4.5% bias, about 10 standard errors at N = 20000.
    """
    torch.manual_seed(0)
    batch, draws = 10, 20000
    x = torch.randn(batch, 4, dtype=torch.float64)
    f = positive_branch(x)
    total = torch.zeros_like(x)
    for _ in range(draws):
        total += drop_add_residual(x, positive_branch, rate=rate, mode=mode, training=True)
    scaled = (total / draws - x) / f  # mean of s * I per element, expected 1
    assert torch.allclose(scaled, scaled[:, :1].expand_as(scaled))  # one draw per sample, shared by its row
    p = keep_count(batch, rate) / batch if mode == 'esd' else 1.0 - rate
    z = (scaled[:, 0] - 1.0) / math.sqrt((1 - p) / (p * draws))
    assert z.abs().max() < 4.5, f'{mode} at rate {rate}: per-sample z-scores {z.tolist()}'


def test_esd_keeps_exactly_keep_rows_scaled_by_batch_over_keep():
    torch.manual_seed(1)
    batch, rate = 20, 0.45
    keep = keep_count(batch, rate)
    assert keep == 11
    x = torch.randn(batch, 3)
    for _ in range(20):
        out = drop_add_residual(x, positive_branch, rate=rate, mode='esd', training=True)
        changed = (out != x).any(dim=1)
        assert changed.sum() == keep
        torch.testing.assert_close(out[changed], x[changed] + positive_branch(x[changed]) * batch / keep)
        assert torch.equal(out[~changed], x[~changed])


# -- gradients -----------------------------------------------------------------------------------------------------
def test_gradients_reach_only_kept_samples():
    torch.manual_seed(2)
    batch, dim, rate = 12, 5, 0.5
    keep = keep_count(batch, rate)
    linear = nn.Linear(dim, dim)
    shortcut = torch.randn(batch, dim, requires_grad=True)
    inputs = torch.randn(batch, dim, requires_grad=True)  # distinct rows, so we can tell which ones the branch saw
    seen = []

    def branch(t):
        seen.append(t.detach().clone())
        return linear(t)

    out = drop_add_residual(shortcut, branch, inputs, rate=rate, mode='esd', training=True)
    upstream = torch.randn(batch, dim)
    (out * upstream).sum().backward()

    (rows,) = seen
    kept = torch.tensor([int((inputs.detach() == r).all(dim=1).nonzero()) for r in rows])
    assert len(kept) == keep and len(set(kept.tolist())) == keep
    scale = batch / keep
    # parameter gradients: exactly the kept rows' contributions, scaled by B / keep
    torch.testing.assert_close(linear.weight.grad, scale * upstream[kept].T @ inputs.detach()[kept])
    torch.testing.assert_close(linear.bias.grad, scale * upstream[kept].sum(0))
    # branch input: nothing for dropped rows, the scaled branch gradient for kept ones
    dropped = torch.ones(batch, dtype=torch.bool)
    dropped[kept] = False
    assert torch.equal(inputs.grad[dropped], torch.zeros(int(dropped.sum()), dim))
    torch.testing.assert_close(inputs.grad[kept], scale * upstream[kept] @ linear.weight.detach())
    # shortcut: identity for every row
    assert torch.equal(shortcut.grad, upstream)


# -- exactness -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['esd', 'mask', 'none'])
def test_eval_and_rate_zero_are_a_plain_residual(mode):
    torch.manual_seed(3)
    x = torch.randn(16, 7)
    plain = x + positive_branch(x)
    assert torch.equal(drop_add_residual(x, positive_branch, rate=0.5, mode=mode, training=False), plain)
    assert torch.equal(drop_add_residual(x, positive_branch, rate=0.0, mode=mode, training=True), plain)
    # a batch of one keeps its only sample at any rate below 1
    one = x[:1]
    with pytest.warns(UserWarning, match='effective rate of 0.000'):  # and says that it drops nothing
        assert torch.equal(drop_add_residual(one, positive_branch, rate=0.3, mode='esd', training=True),
                           one + positive_branch(one))


def test_mode_none_trains_as_a_plain_residual():
    torch.manual_seed(3)
    x = torch.randn(16, 7)
    assert torch.equal(drop_add_residual(x, positive_branch, rate=0.5, mode='none', training=True),
                       x + positive_branch(x))


def test_vit_eval_and_mode_none_ignore_the_rate():
    torch.manual_seed(4)
    model = create_model('vit_t', img_size=32, num_classes=10, drop_path_rate=0.5, depth=2)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = model.eval()(images)
        set_stochastic_depth(model, mode='none')
        assert torch.equal(model.train()(images), reference)  # the ViT has no dropout or batch norm
        set_stochastic_depth(model, mode='esd')
        assert torch.equal(model.eval()(images), reference)
        assert not torch.equal(model.train()(images), reference)  # stochastic depth does act in training


def test_vit_esd_trains():
    torch.manual_seed(5)
    model = create_model('vit_t', img_size=32, num_classes=10, drop_path_rate=0.5, depth=2).train()
    loss = nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.randint(0, 10, (8,)))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# -- FLOPs ---------------------------------------------------------------------------------------------------------
def flop_counter() -> FlopCounterMode:
    """torch's counter, plus the CPU fused-attention kernels it does not know (same cost as the GPU ones)."""
    return FlopCounterMode(display=False, custom_mapping={  # the counter passes shapes to these
        aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda grad, q, k, v, *_, **__: sdpa_backward_flop_count(grad, q, k, v)})


def block_train_flops(model: nn.Module, tokens: torch.Tensor) -> int:
    """Forward + backward FLOPs of the transformer blocks alone."""
    tokens = tokens.detach().requires_grad_()
    with flop_counter() as counter:
        x = tokens
        for block in model.blocks:
            x = block(x)
        x.square().mean().backward()
    return counter.get_total_flops()


def test_esd_block_flops_scale_with_one_minus_rate():
    torch.manual_seed(6)
    batch = 20  # B (1 - rate) is a whole number for every rate below, so ESD's rate is exact
    model = create_model('vit_t', img_size=32, num_classes=10, depth=4).train()
    with torch.no_grad():
        tokens = model._pos_embed(model.patch_embed(torch.randn(batch, 3, 32, 32)))
    for rate in (0.1, 0.2, 0.45, 0.6):
        assert effective_drop_rate(batch, rate) == pytest.approx(rate)
        set_stochastic_depth(model, rate, 'mask')
        masked = block_train_flops(model, tokens)
        set_stochastic_depth(model, rate, 'esd')
        efficient = block_train_flops(model, tokens)
        assert masked > 0
        assert efficient / masked == pytest.approx(1 - rate, rel=0.03), f'rate {rate}'


def block_saved_bytes(model: nn.Module, tokens: torch.Tensor) -> int:
    """Bytes of the distinct storages the blocks save for backward, parameters excluded: the activation
    memory a training step holds (saved tensors stay alive until backward, so addresses are unique)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in parameters:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x = tokens.detach().requires_grad_()
        for block in model.blocks:
            x = block(x)
    return sum(storages.values())


def test_esd_block_activation_memory_scales_with_one_minus_rate():
    torch.manual_seed(6)
    batch = 20
    model = create_model('vit_t', img_size=32, num_classes=10, depth=4).train()
    with torch.no_grad():
        tokens = model._pos_embed(model.patch_embed(torch.randn(batch, 3, 32, 32)))
    for rate in (0.1, 0.2, 0.45, 0.6):
        set_stochastic_depth(model, rate, 'mask')
        masked = block_saved_bytes(model, tokens)
        set_stochastic_depth(model, rate, 'esd')
        efficient = block_saved_bytes(model, tokens)
        assert efficient / masked == pytest.approx(1 - rate, rel=0.03), f'rate {rate}'


# -- quantization (supplement, appendix C) -------------------------------------------------------------------------
def test_effective_rate_is_a_multiple_of_one_over_batch():
    requested = [i / 100 for i in range(0, 91)]
    effective = [effective_drop_rate(8, r) for r in requested]
    for r, e in zip(requested, effective):
        assert (e * 8) == pytest.approx(round(e * 8), abs=1e-9)
        assert abs(e - r) <= 1 / 16 + 1e-9  # the nearest multiple of 1/8
    assert sorted({round(e * 8) for e in effective}) == list(range(8))  # figure C.1: 0, 1/8, ..., 7/8
    assert all(abs(effective_drop_rate(1024, r) - r) <= 1 / 2048 + 1e-9 for r in requested)
    assert effective_drop_rate(8, 0.0) == 0.0 and keep_count(8, 0.0) == 8
    assert keep_count(8, 0.99) == 1  # never an empty subset


def test_coarse_quantization_warns_and_fine_does_not():
    x = torch.randn(8, 4)
    with pytest.warns(UserWarning, match=r'batch of 8 at drop rate 0.3 keeps 6 samples, an effective rate of 0.250'):
        drop_add_residual(x, positive_branch, rate=0.3, mode='esd', training=True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        drop_add_residual(torch.randn(64, 4), positive_branch, rate=0.3, mode='esd', training=True)  # 45 of 64
        drop_add_residual(x, positive_branch, rate=0.25, mode='esd', training=True)  # exact: 6 of 8
        drop_add_residual(x, positive_branch, rate=0.3, mode='mask', training=True)  # masking is not quantized
    model = create_model('vit_t', img_size=32, num_classes=10, drop_path_rate=0.3, depth=2)
    (row,) = esd_report(model, 8)
    assert row['keep'] == 6 and row['effective'] == pytest.approx(0.25) and row['coarse']
    (row,) = esd_report(model, 64)
    assert not row['coarse']


# -- schedules and argument checks ---------------------------------------------------------------------------------
def test_uniform_and_linear_schedules():
    model = create_model('vit_t', img_size=32, num_classes=10)
    blocks = stochastic_depth_blocks(model)
    assert len(blocks) == 12
    assert set_stochastic_depth(model, 0.3, 'esd', 'uniform') == [0.3] * 12
    assert all(b.drop_path_mode == 'esd' for b in blocks)
    rates = set_stochastic_depth(model, 0.3, 'mask', 'linear')
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    steps = [b - a for a, b in zip(rates, rates[1:])]
    assert all(s == pytest.approx(0.3 / 11) for s in steps)
    assert [b.drop_path_rate for b in blocks] == rates and all(b.drop_path_mode == 'mask' for b in blocks)
    linear = create_model('vit_t', img_size=32, num_classes=10, drop_path_rate=0.3, drop_path_schedule='linear')
    assert [b.drop_path_rate for b in stochastic_depth_blocks(linear)] == rates
    per_block = [0.05 * i for i in range(12)]
    assert set_stochastic_depth(model, per_block) == per_block
    with pytest.raises(ValueError, match='got 3 drop rates for 12'):
        set_stochastic_depth(model, [0.1, 0.2, 0.3])


@pytest.mark.parametrize('rate', [1.0, 1.5, -0.1, float('nan')])
def test_invalid_rates_raise(rate):
    model = create_model('vit_t', img_size=32, num_classes=10, depth=2)
    message = r'drop_path_rate=.*: expected a drop rate in \[0, 1\)'
    with pytest.raises(ValueError, match=message):
        set_stochastic_depth(model, rate)
    with pytest.raises(ValueError, match=message):
        set_stochastic_depth(model, [0.1, rate])
    with pytest.raises(ValueError, match=message):
        create_model('vit_t', img_size=32, num_classes=10, depth=2, drop_path_rate=rate)


def test_invalid_modes_and_schedules_raise():
    model = create_model('vit_t', img_size=32, num_classes=10, depth=2)
    expected = r"expected one of \('esd', 'mask', 'none'\)"
    with pytest.raises(ValueError, match=r"drop_path_mode='dropout': " + expected):
        set_stochastic_depth(model, mode='dropout')
    with pytest.raises(ValueError, match=r"drop_path_mode='dropout': " + expected):
        create_model('vit_t', img_size=32, drop_path_mode='dropout')
    with pytest.raises(ValueError, match=r"drop_path_mode='ESD': " + expected):
        drop_add_residual(torch.randn(4, 2), positive_branch, rate=0.5, mode='ESD', training=True)
    with pytest.raises(ValueError, match=r"drop_path_schedule='cosine': expected one of \('uniform', 'linear'\)"):
        set_stochastic_depth(model, 0.2, schedule='cosine')
    with pytest.raises(ValueError, match=r"drop_path_schedule='cosine'"):
        create_model('vit_t', img_size=32, drop_path_schedule='cosine')
