"""Efficient stochastic depth (`backbones.esd`) and our DeiT III ViT: expectation, gradients, exactness, FLOPs,
rate quantization (supplement, appendix C), schedules and argument checks."""
from __future__ import annotations

import math
import shutil
import warnings

import pytest
import torch
import torch._inductor.config
from torch import nn

from backbones import (create_model, drop_add_residual, effective_drop_rate, esd_report, keep_count,
                       set_stochastic_depth, stochastic_depth_blocks)
from backbones import esd
from backbones.vit import Block
from benchmarks.common import SavedForBackward, flop_counter


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


def test_gradients_when_the_branch_reads_the_shortcut():
    """The usual residual x + f(x): x's gradient (identity plus the kept rows' branch gradient, which ESD's eager
    path adds in one backward) and the output match plain index_select / index_add, and gradcheck passes."""
    torch.manual_seed(10)
    batch, dim = 12, 5
    linear = nn.Linear(dim, dim).double()
    kept = torch.tensor([0, 3, 4, 7, 9, 10])
    x = torch.randn(batch, dim, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(batch, dim, dtype=torch.float64)
    out = drop_add_residual(x, linear, rate=0.5, mode='esd', training=True, kept=kept)
    (out * upstream).sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    weight_grad, linear.weight.grad = linear.weight.grad, None
    reference = x_ref.index_add(0, kept, linear(x_ref.index_select(0, kept)), alpha=batch / len(kept))
    (reference * upstream).sum().backward()
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(weight_grad, linear.weight.grad)
    assert torch.autograd.gradcheck(
        lambda t: drop_add_residual(t, linear, rate=0.5, mode='esd', training=True, kept=kept), (x,))


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
    memory a training step holds."""
    with SavedForBackward(model) as saved:
        x = tokens.detach().requires_grad_()
        for block in model.blocks:
            x = block(x)
    return saved.bytes


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
    with pytest.raises(ValueError, match=r"drop_path_schedule='cosine': expected one of \('uniform', 'linear'\)"):
        set_stochastic_depth(model, 0.2, schedule='cosine')
    with pytest.raises(ValueError, match=r"drop_path_schedule='cosine'"):
        create_model('vit_t', img_size=32, drop_path_schedule='cosine')


# -- draws ---------------------------------------------------------------------------------------------------------
def test_block_draws_independent_uniform_subsets_per_branch():
    """A block's branches are drawn at once (`draw_kept`), yet each is a uniform subset of `keep` distinct
    samples, independent of the other: sample i is in a branch's subset with probability keep/B and in both
    with (keep/B)^2. 4.5 standard errors over 4000 draws (fixed seed)."""
    torch.manual_seed(7)
    batch, keep, draws = 10, 4, 4000
    block = Block(8, 2).train()
    block.drop_path_rate = 1 - keep / batch
    x = torch.zeros(batch, 3, 8)
    inside = torch.zeros(draws, 2, batch)
    for n in range(draws):
        first, second = block.draw_kept(x, 2)
        assert first.shape == second.shape == (keep,) and first.dtype == torch.int64
        assert len(set(first.tolist())) == len(set(second.tolist())) == keep
        inside[n, 0, first], inside[n, 1, second] = 1.0, 1.0
    p = keep / batch
    for observed, expected in ((inside.mean(0), p), ((inside[:, 0] * inside[:, 1]).mean(0), p * p)):
        z = (observed - expected) / math.sqrt(expected * (1 - expected) / draws)
        assert z.abs().max() < 4.5, z.tolist()
    assert block.draw_kept(x, 2) != (None, None) and block.eval().draw_kept(x, 2) == (None, None)


def test_vit_draws_all_blocks_at_once():
    """One random and one sort kernel per forward pass for every block's branches (`draw_block_kept`), not one
    per block; blocks that compute every sample (rate 0, mask mode) get Nones. Across the blocks' branches the
    kept subsets still differ (independent rows), and each is a set of `keep` distinct samples."""
    from collections import Counter
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    model = create_model('vit_t', img_size=16, patch_size=8, embed_dim=16, depth=5, num_heads=2, num_classes=3)
    set_stochastic_depth(model, [0.5, 0.0, 0.25, 0.5, 0.5], 'esd')
    model.blocks[3].drop_path_mode = 'mask'
    x = torch.randn(16, 3, 16, 16)
    drawn = esd.draw_block_kept(model.blocks, torch.zeros(16, 5, 16))
    assert [None if k[0] is None else len(k) for k in drawn] == [2, None, 2, None, 2]
    assert all(k == (None, None) for k in (drawn[1], drawn[3]))
    kept = [k.tolist() for block in drawn if block[0] is not None for k in block]
    assert [len(k) for k in kept] == [8, 8, 12, 12, 8, 8] and all(len(set(k)) == len(k) for k in kept)
    assert len({tuple(sorted(k)) for k in kept}) > 1
    with CountOps() as counted:
        model.train()(x).sum().backward()
    assert counted.ops['randint'] == 1 and counted.ops['sort'] == 1, counted.ops
    assert esd.draw_block_kept(model.eval().blocks, torch.zeros(16, 5, 16)) == [(None, None)] * 5


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_residual_chain_is_the_branches_one_after_the_other(dtype):
    """`residual_chain` (one autograd function per branch in eager ESD) gives the numbers and the gradients of
    `drop_add_residual` called branch by branch with the same kept indices, including a branch whose output
    dtype differs from the residual stream's (cast back, as `drop_add_residual` does)."""
    torch.manual_seed(0)
    weights = [torch.randn(6, 6, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    branches = [lambda t, w=w: torch.tanh(t.double() @ w).to(dtype) for w in weights[:2]]
    branches.append(lambda t, w=weights[2]: (t.double() @ w).float())  # another dtype than the stream's
    kept = [torch.randperm(10)[:6] for _ in branches]
    x0 = torch.randn(10, 6, dtype=dtype)
    results = []
    for chained in (True, False):
        x = x0.clone().requires_grad_()
        if chained:
            y = esd.residual_chain(x, branches, kept, rate=0.4, mode='esd', training=True)
        else:
            y = x
            for branch, k in zip(branches, kept):
                y = drop_add_residual(y, branch, rate=0.4, mode='esd', training=True, kept=k)
        (y * torch.arange(60, dtype=dtype).view(10, 6)).sum().backward()
        results.append([y.detach(), x.grad] + [w.grad.clone() for w in weights])
        for w in weights:
            w.grad = None
    for chained, single in zip(*results):
        torch.testing.assert_close(chained, single, rtol=0, atol=0)
    assert results[0][0].dtype == dtype


# -- torch.compile -------------------------------------------------------------------------------------------------
def eager_and_compiled(module: nn.Module, x: torch.Tensor, **compile_args):
    """Output and input gradient of `module(x)`, eager and compiled, each after `manual_seed(0)`."""
    results = []
    for fn in (module, torch.compile(module, fullgraph=True, **compile_args)):  # fullgraph: a break is an error
        torch.manual_seed(0)
        xi = x.detach().clone().requires_grad_()
        out = fn(xi)
        out.square().sum().backward()
        results.append((out.detach(), xi.grad))
    return results


@pytest.mark.parametrize('mode, dynamic', [('esd', False), ('esd', True), ('mask', False)])
def test_vit_training_step_traces_as_one_graph(mode, dynamic):
    """The whole ViT forward + backward traces without a graph break, ESD's draws and index_add included, also
    with a symbolic batch size (dynamic=True, as torch.compile does after a batch-size change). The aot_eager
    backend runs the traced aten graph as it is, so with the same seed it draws the same random numbers and
    must give eager's output and gradients."""
    torch._dynamo.reset()
    torch.manual_seed(8)
    model = create_model('vit_t', img_size=16, patch_size=8, num_classes=4, depth=1, embed_dim=16,
                         num_heads=2, drop_path_rate=0.3, drop_path_mode=mode).train()
    images = torch.randn(10, 3, 16, 16)
    (eager, eager_grad), (compiled, compiled_grad) = eager_and_compiled(model, images, backend='aot_eager',
                                                                        dynamic=dynamic)
    with torch.no_grad():
        assert not torch.allclose(eager, model.eval()(images))  # samples were dropped
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(compiled_grad, eager_grad)


@pytest.mark.skipif(not any(shutil.which(c) for c in ('g++', 'c++', 'clang++')),
                    reason='torch.compile (inductor) needs a C++ compiler on CPU and this machine has none')
def test_esd_block_compiles_with_inductor():
    """Our ViT block with ESD through inductor, fullgraph: the random draw, the gathers and the scaled index_add
    are lowered and fused, and give eager's output and gradient (fallback_random: inductor draws with torch's
    generator, so the same seed selects the same samples)."""
    torch._dynamo.reset()
    torch.manual_seed(9)
    block = Block(16, 2).train()
    block.drop_path_rate = 0.3
    x = torch.randn(10, 5, 16)
    with torch._inductor.config.patch(fallback_random=True):
        (eager, eager_grad), (compiled, compiled_grad) = eager_and_compiled(block, x)
    with torch.no_grad():
        assert not torch.allclose(eager, block.eval()(x))  # samples were dropped
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(compiled_grad, eager_grad)


def test_forward_trusts_the_rates_checked_where_they_were_set(monkeypatch):
    """Issue 21: rate and mode are checked once, by create_model / set_stochastic_depth; a block's forward (the
    hot path, ESD and masking) checks nothing again."""
    model = create_model('vit_t', img_size=32, num_classes=10, depth=2, drop_path_rate=0.5).train()
    monkeypatch.setattr(esd, 'check_rate', lambda *a, **k: pytest.fail('a rate checked in the forward pass'))
    for mode in ('esd', 'mask'):
        esd.set_stochastic_depth(model, mode=mode)
        model(torch.randn(8, 3, 32, 32)).sum().backward()
