"""The training strategies of cosub Table 4 (pretrain/methods.py): each loss against its formula written out by
hand, the frozen teacher, exact resume of the mean teacher and of co-training, every method training on a
generated ImageNet folder, the refusals, the mean teacher's EMA warm-up, the dry run's computed cost, and a method
added at run time (one class and one config group) training through the loop."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

import backbones
from pretrain import engine
from pretrain.cosub import cosub_loss, kd_cosub_loss, kd_loss
from pretrain.config import parse
from pretrain.methods import METHODS, Method, register, saved_weights
from pretrain.train import train as main

from test_cosub import bce, ce
from test_pretrain import Crash, args, assert_same_weights, two_processes, weights


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(1)
    z1, z2, t = (torch.randn(4, 5, generator=g, dtype=torch.float64) for _ in range(3))
    target = torch.tensor([[0.7, 0.3, 0, 0, 0], [0, 1.0, 0, 0, 0], [0, 0, 0.4, 0, 0.6], [0, 0, 0, 1.0, 0]],
                          dtype=torch.float64)
    return z1, z2, t, target


def test_kd_soft_bce(logits):
    z, _, t, y = logits
    expected = 0.3 * bce(z, (y > 0).double()) + 0.7 * bce(z, torch.sigmoid(t))
    assert math.isclose(kd_loss(z, y, t, kd_target='soft', lam=0.3, loss='bce').item(), expected.item(),
                        rel_tol=1e-6)


def test_kd_soft_ce_with_temperature(logits):
    z, _, t, y = logits
    T = 2.0
    expected = 0.5 * ce(z, y) + 0.5 * T * T * ce(z / T, torch.softmax(t / T, -1))
    got = kd_loss(z, y, t, kd_target='soft', loss='ce', temperature=T)
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-6)


def test_kd_hard_is_deit_hard_distillation(logits):
    """DeiT's hard distillation: 1/2 CE(z, y) + 1/2 CE(z, argmax t)."""
    z, _, t, y = logits
    hard = F.one_hot(t.argmax(-1), 5).double()
    expected = 0.5 * ce(z, y) + 0.5 * F.cross_entropy(z, t.argmax(-1))
    assert math.isclose(kd_loss(z, y, t, loss='ce', kd_target='hard').item(), expected.item(), rel_tol=1e-6)
    assert math.isclose(ce(z, hard).item(), F.cross_entropy(z, t.argmax(-1)).item(), rel_tol=1e-6)


def test_kd_gives_the_teacher_no_gradient(logits):
    z, _, t, y = (x.clone().requires_grad_() for x in logits)
    kd_loss(z, y, t, kd_target='soft', loss='ce').backward()
    assert t.grad is None and z.grad is not None


def test_kd_cosub_formula(logits):
    """Each submodel learns from the label (lam) and, with equal weights, from the other submodel and the teacher."""
    z1, z2, t, y = logits
    yb = (y > 0).double()
    lam = 0.4
    expected = lam * (bce(z1, yb) + bce(z2, yb)) / 2 + (1 - lam) * (
        (bce(z1, torch.sigmoid(z2)) + bce(z1, torch.sigmoid(t))) / 2
        + (bce(z2, torch.sigmoid(z1)) + bce(z2, torch.sigmoid(t))) / 2) / 2
    got = kd_cosub_loss(torch.cat([z1, z2]), y, t, kd_target='soft', lam=lam, loss='bce')
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-6)
    # lam = 1: the plain baseline on both submodels
    assert math.isclose(kd_cosub_loss(torch.cat([z1, z2]), y, t, kd_target='soft', lam=1.0, loss='ce').item(),
                        ((ce(z1, y) + ce(z2, y)) / 2).item(), rel_tol=1e-6)


def test_kd_cosub_label_mix_is_deit_distillation_in_the_label_term(logits):
    """kd.mix='label': eq. 2 with its label term replaced by DeiT's hard distillation (kd.lam on the label, the
    rest on the teacher's argmax), the co-training term unchanged."""
    z1, z2, t, y = logits
    lam, kd_lam = 0.4, 0.7
    teacher = F.one_hot(t.argmax(-1), 5).double()
    label = sum(kd_lam * ce(z, y) + (1 - kd_lam) * ce(z, teacher) for z in (z1, z2)) / 2
    peers = (ce(z1, torch.softmax(z2, -1)) + ce(z2, torch.softmax(z1, -1))) / 2
    got = kd_cosub_loss(torch.cat([z1, z2]), y, t, kd_target='hard', mix='label', lam=lam, kd_lam=kd_lam, loss='ce')
    assert math.isclose(got.item(), (lam * label + (1 - lam) * peers).item(), rel_tol=1e-6)


def test_co_training_loss_is_cosub_over_two_models(imagenet_dir, tmp_path):
    """The pair stacks its models' logits (first model's rows first): cosub's loss over them is co-training's."""
    trainer = engine.Trainer(parse(args(imagenet_dir, tmp_path, '--method', 'cotrain', epochs=1)))
    pair = trainer.model
    x = torch.randn(3, 3, 32, 32)
    pair.eval()
    za, zb = pair.models[0](x), pair.models[1](x)
    assert torch.equal(pair(x), torch.cat([za, zb]))
    assert not torch.equal(za, zb)  # two initialisations
    y = torch.eye(4)[:3]
    expected = 0.5 * (bce(za, y) + bce(zb, y)) / 2 + 0.5 * (bce(za, torch.sigmoid(zb)) + bce(zb, torch.sigmoid(za))) / 2
    got = trainer.method.loss(pair(x), y, None)
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-5)
    assert cosub_loss(pair(x), y).item() == got.item()


@pytest.fixture(scope='module')
def teacher(imagenet_dir, tmp_path_factory):
    """A trained checkpoint of the tiny model: the teacher of kd and kd_cosub."""
    out = tmp_path_factory.mktemp('teacher')
    main(args(imagenet_dir, out, '--method', 'baseline', epochs=1))
    return out / 'checkpoint.pth'


def test_the_teacher_is_frozen_in_eval_mode_and_never_saved(imagenet_dir, tmp_path, teacher):
    trainer = engine.Trainer(parse(args(imagenet_dir, tmp_path, '--method', 'kd', '--teacher', str(teacher),
                                        epochs=1)))
    t = trainer.method.teacher
    before = {k: v.clone() for k, v in t.state_dict().items()}
    modes = []
    t.register_forward_pre_hook(lambda m, inp: modes.append((m.training, torch.is_grad_enabled())))
    trainer.fit()
    assert modes and set(modes) == {(False, False)}  # eval mode, no graph, at every step
    assert all(not p.requires_grad and p.grad is None for p in t.parameters())
    assert_same_weights(before, t.state_dict())
    opt_params = {id(p) for g in trainer.optimizer.param_groups for p in g['params']}
    assert not opt_params & {id(p) for p in t.parameters()}
    ckpt = backbones.load_file(tmp_path / 'checkpoint.pth')
    assert ckpt['teacher']['source'] == str(teacher) and len(ckpt['teacher']['sha256']) == 64
    assert set(ckpt['model']) == set(weights(teacher))  # the student's weights only: no teacher tensors


@pytest.mark.parametrize('method', sorted(METHODS))
def test_every_method_trains_on_an_imagenet_folder(imagenet_dir, tmp_path, teacher, method):
    extra = ['--teacher', str(teacher)] if method in ('kd', 'kd_cosub') else []
    record = main(args(imagenet_dir, tmp_path, '--method', method, *extra, epochs=1,
                       options=('mean_teacher.decay=0.5',)))
    assert math.isfinite(record['train_loss']) and 0 <= record['val_top1'] <= 100
    ckpt = backbones.load_file(tmp_path / 'checkpoint.pth')
    assert ckpt['config']['method'] == method
    # the weights it declares, and only those, are saved and evaluated
    declared = {name for cls in METHODS.values() for name in cls.saves}
    assert {name for name in declared if name in ckpt} == set(METHODS[method].saves)
    assert ckpt['saved_weights'] == saved_weights(METHODS[method])  # described in the checkpoint, plain data
    assert backbones.checkpoint.weights_held(ckpt) == ['model', *METHODS[method].saves]
    assert {k for k in record if k.startswith('val_top1')} == {
        'val_top1', *(f'val_top1{suffix}' for _, suffix in METHODS[method].saves.values())}


def _crash_resume(imagenet_dir, tmp_path, monkeypatch, *extra, options=()):
    """N epochs straight, and k = 1 epoch + a crash + a resume for the other N - k: the same checkpoint."""
    straight, broken = tmp_path / 'straight', tmp_path / 'broken'
    main(args(imagenet_dir, straight, *extra, epochs=3, options=options))
    real_epoch = engine.Trainer.train_one_epoch

    def crash_in_second_epoch(self):
        if self.epoch == 1:
            raise Crash('node failure')
        return real_epoch(self)
    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(engine.Trainer, 'train_one_epoch', crash_in_second_epoch)
        main(args(imagenet_dir, broken, *extra, epochs=3, options=options))
    main(args(imagenet_dir, broken, *extra, '--resume', epochs=3, options=options))
    a, b = backbones.load_file(straight / 'checkpoint.pth'), backbones.load_file(broken / 'checkpoint.pth')
    log = [json.loads(x) for x in (broken / 'log.jsonl').read_text().splitlines()]
    return a, b, log


def test_mean_teacher_resumes_exactly(imagenet_dir, tmp_path, monkeypatch):
    a, b, log = _crash_resume(imagenet_dir, tmp_path, monkeypatch, '--method', 'mean_teacher',
                              options=('mean_teacher.decay=0.9',))
    assert_same_weights(a['model'], b['model'])
    assert_same_weights(a['model_ema'], b['model_ema'])
    assert not all(torch.equal(a['model'][k], a['model_ema'][k]) for k in a['model'])  # a real average
    assert [r['epoch'] for r in log] == [0, 1, 2] and all('val_top1_ema' in r for r in log)


def test_co_training_resumes_exactly(imagenet_dir, tmp_path, monkeypatch):
    a, b, log = _crash_resume(imagenet_dir, tmp_path, monkeypatch, '--method', 'cotrain')
    assert_same_weights(a['model'], b['model'])
    assert_same_weights(a['peer_model'], b['peer_model'])
    assert a['model'].keys() == a['peer_model'].keys()
    assert all('val_top1_peer' in r for r in log)
    # the first model is an ordinary checkpoint of the architecture
    model = backbones.create_model('vit_t', num_classes=4, img_size=32, embed_dim=32, depth=2, num_heads=2,
                                   patch_size=8)
    assert backbones.load_checkpoint(model, tmp_path / 'straight' / 'checkpoint.pth', strict=True).ok


@pytest.mark.e2e
def test_co_training_in_two_processes_equals_one(imagenet_dir, tmp_path):
    """DDP, and FSDP (each model and each block a unit), over the pair: the same two models as one process
    (deterministic: no drop path, no mixup)."""
    options = ['model.drop_path_rate=0.0', 'mixup.mixup_alpha=0.0', 'mixup.cutmix_alpha=0.0']
    main(args(imagenet_dir, tmp_path / 'one', '--method', 'cotrain', epochs=1, options=options))
    one = backbones.load_file(tmp_path / 'one' / 'checkpoint.pth')
    for name, extra in (('ddp', []), ('fsdp', ['train.fsdp=True'])):
        run = two_processes(args(imagenet_dir, tmp_path / name, '--method', 'cotrain', epochs=1,
                                 options=options + extra))
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        two = backbones.load_file(tmp_path / name / 'checkpoint.pth')
        assert two['fsdp'] == (name == 'fsdp')
        for key in ('model', 'peer_model'):
            assert_same_weights(one[key], two[key], exact=False)


def refused(capsys, argv, *words):
    """`pretrain/train.py argv` ends with exit code 2 and one line holding `words` (in this process)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, (e.value.code, err)
    for w in words:
        assert w in err[0], err[0]


def test_refusals(imagenet_dir, tmp_path, teacher, capsys):
    refused(capsys, ['--cfg', 'demo', '--method', 'kd', '--dry-run'], '--method kd needs a teacher')
    refused(capsys, ['--cfg', 'demo', '--method', 'distill', '--dry-run'], "method='distill'", 'cotrain')
    refused(capsys, ['--cfg', 'demo', '--no-cosub', '--method', 'cotrain', '--dry-run'], '--no-cosub')
    # the method groups' ranges are the config schema's (pretrain/config.py SETTINGS)
    refused(capsys, ['--cfg', 'demo', '--dry-run', '--cfg-options', 'cosub.num_submodels=0'], 'cosub.num_submodels=0')
    refused(capsys, ['--cfg', 'demo', '--dry-run', '--method', 'mean_teacher', '--cfg-options',
                     'mean_teacher.decay=1.0'], 'mean_teacher.decay=1.0')
    # a teacher of other classes: trained on 4, the student here sees 3
    few = tmp_path / 'three'
    import shutil
    shutil.copytree(imagenet_dir, few)
    for split in ('train', 'val'):
        shutil.rmtree(sorted((few / split).iterdir())[-1])
    refused(capsys, args(few, tmp_path / 'a', '--method', 'kd', '--teacher', str(teacher), epochs=1),
            'predicts 4 classes, the student 3')
    # --resume with another teacher
    first = tmp_path / 'kd'
    main(args(imagenet_dir, first, '--method', 'kd', '--teacher', str(teacher), epochs=1))
    other = tmp_path / 'other_teacher.pth'
    ckpt = backbones.load_file(teacher)
    ckpt['model'] = {k: v + 1 for k, v in ckpt['model'].items()}
    backbones.save_file(ckpt, other)
    capsys.readouterr()
    refused(capsys, args(imagenet_dir, first, '--method', 'kd', '--teacher', str(other), '--resume', epochs=2),
            'resume with the same teacher')
    # --resume of a run of another method
    refused(capsys, args(imagenet_dir, first, '--method', 'cosub', '--resume', epochs=2),
            'was trained with method kd', '--method kd')


def _cost_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith('method cost'))


def test_dry_run_computes_the_cost_from_the_models(capsys):
    """Figure 2's assumptions (a teacher of the student's size, every block computed: masking) give Figure 2's
    figures back; a smaller teacher, or ESD, give what the run's models cost; Figure 2's stand beside, labelled."""
    from pretrain.dry_run import dry_run
    mask = ['--cfg-options', "model.drop_path_mode='mask'"]
    for method, computed in (('baseline', 'x1 weights, x1 optimizer state, x1 compute'),
                             ('kd', 'x2 weights, x1 optimizer state, x1.33 compute'),
                             ('mean_teacher', 'x2 weights, x1 optimizer state, x1.33 compute'),
                             ('cotrain', 'x2 weights, x2 optimizer state, x2 compute'),
                             ('cosub', 'x1 weights, x1 optimizer state, x2 compute')):
        text = dry_run(parse(['--cfg', 'vit_l', '--method', method, '--teacher', 't.pth', '--teacher-model', 'vit_l',
                              *mask]))
        assert _cost_line(text).startswith(f'method cost       {computed} of the baseline, computed'), text
        assert f'paper cost        {computed} (Figure 2)' in text
    text = dry_run(parse(['--cfg', 'vit_l', '--method', 'cotrain']))
    assert '(d) co-training' in text
    # KD + cosub: not in Figure 2; a ViT-S teacher of a ViT-L student adds little; ESD's keep rate is applied
    text = dry_run(parse(['--cfg', 'vit_l', '--method', 'kd_cosub', '--teacher', 'runs/vit_s/checkpoint.pth',
                          '--teacher-model', 'vit_s']))
    assert 'paper cost        none: Figure 2 has no (b)+(e) KD + cosub row' in text
    assert 'teacher vit_s (kd.teacher_model) 22.' in text and 'ESD runs 0.547 of the blocks' in text
    cost = _cost_line(text)
    assert 'x1.07 weights, x1 optimizer state, x1.1' in cost, cost  # 2 x 0.547 + 4.6 / (3 x 61.6) GFLOPs
    # a teacher of unknown architecture (the file is not here): the student's size, said so
    text = dry_run(parse(['--cfg', 'vit_l', '--method', 'kd', '--teacher', 'runs/vit_h/checkpoint.pth']))
    assert "teacher unknown (the student's size assumed" in text and 'runs/vit_h/checkpoint.pth' in text


@pytest.mark.e2e
def test_demo_prints_table_4_in_miniature(tmp_path, capsys):
    from pretrain.demo import TABLE_4, table_4
    # one epoch on two of the five digits, loaded in-process: the path, in a quarter of the demo's time
    summary = table_4(tmp_path, ['--epochs', '1', '--cfg-options', 'data.classes=[0,1]', 'data.num_workers=0'])
    printed = capsys.readouterr().out
    assert set(summary) == {f'{m} val top-1' for m in METHODS}
    table = printed[printed.index('Table 4 in miniature (digits'):]
    for method, (vit_l, vit_h) in TABLE_4.items():
        assert f'{vit_l:11.1f} {vit_h:6.1f}' in next(line for line in table.splitlines() if f' {method} ' in line)
    assert 'EMA ' in table and '2nd model ' in table


@pytest.mark.parametrize('layout', ['official_deit3', 'timm_safetensors'])
def test_teacher_from_a_released_file(imagenet_dir, tmp_path, layout, capsys):
    """Released files hold weights only: a ViT's architecture is read from its shapes (as the exporter does), any
    other architecture is named with --teacher-model (refused without it)."""
    torch.manual_seed(0)
    released = backbones.create_model('vit_t', num_classes=4, img_size=32)
    sd = released.state_dict()
    if layout == 'official_deit3':  # DeiT III's own names for LayerScale, {'model': ...} as published
        sd = {k.replace('ls1.gamma', 'gamma_1').replace('ls2.gamma', 'gamma_2'): v for k, v in sd.items()}
        path = tmp_path / 'deit_3_tiny.pth'
        torch.save({'model': sd}, path)
    else:
        from safetensors.torch import save_file
        path = tmp_path / 'model.safetensors'
        save_file(sd, str(path))
    trainer = engine.Trainer(parse(args(imagenet_dir, tmp_path / 'run', '--method', 'kd', '--teacher', str(path),
                                        epochs=1)))
    assert_same_weights(released.state_dict(), trainer.method.teacher.state_dict())
    assert trainer.method.identity['model'] == 'vit_t'
    trainer.fit()
    convnet = tmp_path / 'resnet.pth'
    torch.save({'model': backbones.create_model('resnet10t', num_classes=4).state_dict()}, convnet)
    refused(capsys, args(imagenet_dir, tmp_path / 'no_name', '--method', 'kd', '--teacher', str(convnet), epochs=1),
            'holds no ViT', '--teacher-model')
    trainer = engine.Trainer(parse(args(imagenet_dir, tmp_path / 'cnn', '--method', 'kd', '--teacher', str(convnet),
                                        '--teacher-model', 'resnet10t', epochs=1)))
    assert trainer.method.identity['model'] == 'resnet10t'


def test_submit_takes_the_method_and_dry_runs_without_submitting(capsys):
    from pretrain import submit
    submit.main(['--cfg', 'vit_l', '--partition', 'p', '--nodes', '4', '--method', 'cotrain', '--dry-run'])
    out = capsys.readouterr().out
    assert 'method            cotrain: (d) co-training' in out and 'GPU-hours' in out
    # the job's GPUs, not the config's dry_run.gpus (8): the per-device batch and ESD rate are those it will run
    assert 'GPUs              32 (--nodes x --gpus-per-node)' in out and 'global 2048 = 32 GPUs x 64 per' in out


def test_cost_benchmark_measures_figure_2_storage(tmp_path):
    """benchmarks/methods.py on the real engine: the weights and optimizer state each method holds are Figure 2's
    (exact counts; its timings are for the benchmark's report, never asserted)."""
    from benchmarks import methods as bench
    result = bench.main(['--device', 'cpu', '--model', 'vit_t', '--img-size', '32', '--batch', '4', '--steps', '1',
                         '--warmup', '1', '--rounds', '1', '--methods', 'baseline', 'kd', 'mean_teacher', 'cotrain',
                         '--out', str(tmp_path / 'methods')])
    rows = {r['method']: r for r in result['results']}
    for name, row in rows.items():
        weights, optimizer, _ = row['figure_2'].values()
        assert row['weights_vs_baseline'] == pytest.approx(weights, rel=1e-3), name
        assert row['optimizer_vs_baseline'] == pytest.approx(optimizer, rel=1e-3), name
        assert row['step_ms'] > 0
    assert rows['cotrain']['trained_params'] == 2 * rows['baseline']['trained_params']
    assert (tmp_path / 'methods.md').read_text().count('\n| ') == 1 + len(rows)


def _mean_teacher(model, **options):
    from types import SimpleNamespace
    from mmengine.config import Config
    cfg = Config.fromfile(str(backbones.checkpoint.Path(__file__).parents[1] / 'configs' / '_base_' / 'deit3_in1k.py'))
    cfg.merge_from_dict({'method': 'mean_teacher', **{f'mean_teacher.{k}': v for k, v in options.items()}})
    method = METHODS['mean_teacher'](cfg)
    method.setup(SimpleNamespace(fsdp=False, model=model))
    return method


def test_mean_teacher_ema_warms_up():
    """With the base recipe's decay 0.99996, the warm-up's EMA follows the weights in the first steps (decay
    1 - (1 + s)^-3/4: 0 at the first update, then 0.41, 0.56, ...); without it the EMA stays at the
    initialisation. The EMA at step s is the exact lerp with that decay."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    warm, cold = _mean_teacher(model), _mean_teacher(model, warmup=False)
    init = model.weight.detach().clone()
    ema = init.clone()
    for step in range(1, 6):
        with torch.no_grad():
            model.weight.add_(1.0)
        decay = 0.0 if step == 1 else 1 - (1 + (step - 1)) ** -0.75
        ema = decay * ema + (1 - decay) * model.weight.detach()
        warm.after_step(model, step)
        cold.after_step(model, step)
        assert torch.allclose(warm.teacher.weight, ema, atol=1e-5), step
    assert torch.allclose(warm.teacher.weight, model.weight, atol=2.0)  # within 2 of weights moved by 5
    assert torch.allclose(cold.teacher.weight, init, atol=1e-3)  # 5 steps at 0.99996: still the initialisation
    assert 'after a warm-up' in warm.describe() and 'rows report the student' in warm.describe()


def test_a_method_is_one_class_and_one_config_group(imagenet_dir, tmp_path, monkeypatch, capsys):
    """The README's example: a method added at run time, one class and its config group, trains one step through
    the loop and dry-runs with its cost computed and no Figure 2 row."""
    monkeypatch.setitem(METHODS, 'self_distill', None)  # registered for this test only (undone after it)

    @register
    class SelfDistillation(Method):
        """The model's own argmax, without gradient, as a second label (a teacher that costs nothing)."""
        name = 'self_distill'
        row = 'self-distillation (an example)'
        figure_2 = None   # not in the paper

        @property
        def lam(self):
            return float(self.cfg.self_distill.lam)

        def loss(self, logits, targets, teacher):
            return kd_loss(logits, targets, logits, kd_target='hard', lam=self.lam, loss=self.loss_type)

    config = tmp_path / 'with_self_distill.py'
    config.write_text(f"_base_ = ['{backbones.checkpoint.Path(__file__).parents[1] / 'configs' / 'vit_s.py'}']\n"
                      "self_distill = dict(lam=0.5)   # our example's weight of the label\n")
    argv = args(imagenet_dir, tmp_path / 'run', '--method', 'self_distill', epochs=1)
    argv[argv.index('vit_s')] = str(config)
    trainer = engine.Trainer(parse(argv))
    trainer.steps_per_epoch = 1
    record = trainer.fit()
    assert math.isfinite(record['train_loss']) and trainer.global_step == 1
    from pretrain.dry_run import dry_run
    text = dry_run(parse(argv))
    assert 'method            self_distill: self-distillation (an example)' in text
    assert 'x1 weights, x1 optimizer state, x1 compute of the baseline, computed' in text
    assert 'paper cost        none: Figure 2 has no self-distillation (an example) row' in text
