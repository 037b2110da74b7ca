"""pretrain/engine/lamb.py: our multi-tensor LAMB gives timm's Lamb's parameters step for step, shares its state dict
layout (a checkpoint of either resumes with the other) and is what the engine builds for optimizer.type='lamb'."""
import copy

import pytest
import torch
from timm.optim import Lamb
from torch import nn

from pretrain.config import find_config, load_config
from pretrain.engine.builders import build_optimizer
from pretrain.engine.distributed import Dist
from pretrain.engine import lamb
from pretrain.engine.lamb import ForeachLamb

STEPS = 10


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3), nn.Linear(3, 2))


def groups(model):
    """Two groups as the engine builds them (no decay on biases and norms), with their own lr; the last layer is
    left without gradients."""
    decay = [model[0].weight, model[2].weight, model[3].weight]
    no_decay = [model[0].bias, model[1].weight, model[1].bias, model[2].bias, model[3].bias]
    return [dict(params=decay, weight_decay=0.05, lr=2e-2), dict(params=no_decay, weight_decay=0.0, lr=5e-3)]


def random_grads(model, steps=STEPS, seed=1):
    g = torch.Generator().manual_seed(seed)
    trained = list(model.parameters())[:-2]  # model[3] gets none: its parameters must not move
    return [[torch.randn(p.shape, generator=g) for p in trained] for _ in range(steps)]


def run(model, opt, grads):
    trained = list(model.parameters())[:len(grads[0])]
    for step_grads in grads:
        opt.zero_grad(set_to_none=True)
        for p, g in zip(trained, step_grads):
            p.grad = g.clone()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


OPTIONS = [dict(bias_correction=True), dict(bias_correction=False), dict(grad_averaging=False),
           dict(always_adapt=True, trust_clip=True)]


@pytest.mark.parametrize('timm_foreach', [False, True])
@pytest.mark.parametrize('options', OPTIONS, ids=lambda o: ','.join(f'{k}={v}' for k, v in o.items()))
def test_same_parameters_as_timm(options, timm_foreach, monkeypatch):
    """10 steps of random gradients: the same parameters as timm's per-parameter path and its foreach path; with
    timm's foreach, our CPU lists are cut into chunks of <= 20 elements (one tensor of 30 alone)."""
    if timm_foreach:
        monkeypatch.setattr(lamb, 'CPU_CHUNK_ELEMENTS', 20)
    kwargs = dict(betas=(0.9, 0.999), eps=1e-8, **options)
    ref_model, our_model = make_model(), make_model()
    start = [p.detach().clone() for p in our_model.parameters()]
    grads = random_grads(our_model)
    ref = run(ref_model, Lamb(groups(ref_model), max_grad_norm=None, foreach=timm_foreach, **kwargs), grads)
    ours = run(our_model, ForeachLamb(groups(our_model), **kwargs), grads)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for p, s in zip(ours[-2:], start[-2:]):  # no gradient: untouched
        assert torch.equal(p, s)
    assert not any(torch.equal(p, s) for p, s in zip(ours[:-2], start[:-2]))  # the others did move


@pytest.mark.parametrize('first, second', [(Lamb, ForeachLamb), (ForeachLamb, Lamb)], ids=['timm->ours', 'ours->timm'])
def test_state_dict_resumes_across_implementations(first, second):
    """5 steps with one, its state dict loaded into the other, 5 more: the same as 10 steps of timm's Lamb; the
    saved state has timm's layout."""
    make = lambda cls, m: cls(groups(m), eps=1e-8, **({'max_grad_norm': None} if cls is Lamb else {}))
    grads = random_grads(make_model())
    ref_model = make_model()
    ref = run(ref_model, make(Lamb, ref_model), grads)
    model = make_model()
    opt = make(first, model)
    run(model, opt, grads[:5])
    saved = copy.deepcopy(opt.state_dict())
    assert all(torch.is_tensor(g['step']) and g['step'].item() == 5 for g in saved['param_groups'])
    assert {k for s in saved['state'].values() for k in s} == {'exp_avg', 'exp_avg_sq'}
    resumed = make(second, model)
    resumed.load_state_dict(saved)
    after = run(model, resumed, grads[5:])
    for a, b in zip(after, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_refuses_sparse_grads_and_unimplemented_timm_options():
    emb = nn.Embedding(4, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match='sparse gradients'):
        ForeachLamb(emb.parameters()).step()
    model = make_model()
    timm_state = Lamb(groups(model), max_grad_norm=None, caution=True).state_dict()
    opt = ForeachLamb(groups(model))
    opt.load_state_dict(timm_state)
    run(model, Lamb(groups(model), max_grad_norm=None), random_grads(model, 1))  # fills grads
    with pytest.raises(ValueError, match='caution=True is not implemented'):
        opt.step()


@pytest.mark.parametrize('foreach', [True, False])
def test_engine_builds_ours_for_lamb(foreach):
    """The recipe's optimizer.type='lamb' builds ours; optimizer.foreach=False falls back to timm's."""
    cfg = load_config(find_config('vit_s'))
    assert cfg.optimizer.type == 'lamb' and cfg.optimizer.foreach is True
    cfg.optimizer.foreach = foreach
    opt, lr = build_optimizer(make_model(), cfg.optimizer, 2048, Dist(), 2048, 1)
    assert type(opt) is (ForeachLamb if foreach else Lamb)
    assert opt.defaults['eps'] == cfg.optimizer.eps and opt.defaults['max_grad_norm'] is None
    assert [g['weight_decay'] for g in opt.param_groups] == [cfg.optimizer.weight_decay, 0.0]
    assert all(g['lr'] == lr for g in opt.param_groups)
