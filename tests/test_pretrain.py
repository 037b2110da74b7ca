"""Real training steps on a generated ImageNet folder: cosub and baseline paths, exact resume, 2 processes
against 1, and the bad inputs that must give one clear line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import backbones
from pretrain import engine
from pretrain.config import find_config, load_config, parse
from pretrain.train import train as main  # the record; the console script's main() returns None (exit 0)

from conftest import ROOT, write_image

TINY = ['model.name=vit_t', 'model.embed_dim=32', 'model.depth=2', 'model.num_heads=2', 'model.patch_size=8',
        'model.drop_path_rate=0.25', 'data.num_workers=0', 'optimizer.lr=1e-3']


def args(data, out, *extra, epochs=2, batch=8, options=()):
    return ['--cfg', 'vit_s', '--data-path', str(data), '--output-dir', str(out), '--epochs', str(epochs),
            '--batch-size', str(batch), '--input-size', '32', *extra, '--cfg-options', *TINY, *options]


def weights(path):
    return backbones.load_file(path)['model']


def assert_same_weights(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        ok = torch.equal(a[k], b[k]) if exact else torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4)
        assert ok, f'{k} differs'


def two_processes(argv, script='pretrain/train.py') -> subprocess.CompletedProcess:
    """`script argv` under torchrun in 2 CPU processes (gloo), one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                           str(script), *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cosub_training_runs_and_logs(imagenet_dir, tmp_path):
    cfg = parse(args(imagenet_dir, tmp_path))
    trainer = engine.Trainer(cfg)
    seen = []
    trainer.model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].shape[0]) if m.training else None)
    record = trainer.fit()
    assert set(seen) == {16}  # 8 images x 2 submodels in one forward pass
    log = [json.loads(line) for line in (tmp_path / 'log.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in log] == [0, 1]
    assert all({'epoch', 'train_loss', 'val_top1'} <= r.keys() for r in log)
    assert not any('val_top5' in r for r in log)  # 4 classes: top-5 would always be 100%
    assert record['val_n'] == 8 and 0 <= record['val_top1'] <= 100
    ckpt = backbones.load_file(tmp_path / 'checkpoint.pth')  # weights_only=True
    assert ckpt['epoch'] == 2 and ckpt['config']['method'] == 'cosub'
    for name in ('training_curves.png', 'config.py', 'train.log', 'checkpoint_best.pth'):
        assert (tmp_path / name).is_file(), name
    assert any((tmp_path / 'tensorboard').iterdir())


def test_baseline_path_sees_each_image_once(imagenet_dir, tmp_path):
    cfg = parse(args(imagenet_dir, tmp_path, '--no-cosub', epochs=1))
    trainer = engine.Trainer(cfg)
    seen = []
    trainer.model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].shape[0]) if m.training else None)
    trainer.fit()
    assert set(seen) == {8}


class Crash(BaseException):
    """A crash the engine does not handle (a kill, a node failure)."""


def test_resume_after_interruption_is_exact(imagenet_dir, tmp_path, monkeypatch):
    straight, broken = tmp_path / 'straight', tmp_path / 'broken'
    main(args(imagenet_dir, straight, epochs=3))

    real_epoch = engine.Trainer.train_one_epoch
    def crash_in_second_epoch(self):  # noqa: E306
        if self.epoch == 1:
            raise Crash('node failure')
        return real_epoch(self)
    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(engine.Trainer, 'train_one_epoch', crash_in_second_epoch)
        main(args(imagenet_dir, broken, epochs=3))
    main(args(imagenet_dir, broken, '--resume', epochs=3))
    assert_same_weights(weights(straight / 'checkpoint.pth'), weights(broken / 'checkpoint.pth'))
    assert [json.loads(x)['epoch'] for x in (broken / 'log.jsonl').read_text().splitlines()] == [0, 1, 2]


def test_resume_mid_epoch_is_exact(imagenet_dir, tmp_path, monkeypatch):
    straight, broken = tmp_path / 'straight', tmp_path / 'broken'
    options = ('train.checkpoint_steps=1',)
    main(args(imagenet_dir, straight, epochs=2, options=options))
    saves = []
    real_save = engine.Trainer.save_checkpoint
    def crash_after_second_save(self, *a):  # noqa: E306
        real_save(self, *a)
        saves.append(self.step_in_epoch)
        if len(saves) == 2:  # two of the epoch's four steps done
            raise Crash
    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(engine.Trainer, 'save_checkpoint', crash_after_second_save)
        main(args(imagenet_dir, broken, epochs=2, options=options))
    assert backbones.load_file(broken / 'checkpoint.pth')['step_in_epoch'] == 2
    main(args(imagenet_dir, broken, '--resume', str(broken / 'checkpoint.pth'), epochs=2, options=options))
    assert_same_weights(weights(straight / 'checkpoint.pth'), weights(broken / 'checkpoint.pth'))


@pytest.mark.e2e
def test_two_processes_equal_one_on_the_same_global_batch(imagenet_dir, tmp_path):
    # Deterministic model (no drop path, no mixup) so that only the data split across ranks differs.
    options = ['model.drop_path_rate=0.0', 'mixup.mixup_alpha=0.0', 'mixup.cutmix_alpha=0.0']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))
    one = args(imagenet_dir, tmp_path / 'one', epochs=1, options=options)
    two = args(imagenet_dir, tmp_path / 'two', epochs=1, options=options)
    accum = args(imagenet_dir, tmp_path / 'accum', epochs=1, options=options + ['micro_batch_size=4'])
    subprocess.run([sys.executable, 'pretrain/train.py', *one], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, 'pretrain/train.py', *accum], cwd=ROOT, env=env, check=True, capture_output=True)
    run = two_processes(two)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    ref = weights(tmp_path / 'one' / 'checkpoint.pth')
    assert_same_weights(ref, weights(tmp_path / 'two' / 'checkpoint.pth'), exact=False)
    assert_same_weights(ref, weights(tmp_path / 'accum' / 'checkpoint.pth'), exact=False)
    assert len(backbones.load_file(tmp_path / 'two' / 'checkpoint.pth')['rng']) == 2


@pytest.mark.parametrize('clip', [3.0, 0.5])
def test_optimizer_clip_grad_is_the_only_clip(clip):
    """timm's LAMB clips at 1.0 on its own; the engine turns that off, so optimizer.clip_grad (3.0: no clipping
    here, 0.5: both steps clipped) is what the steps apply, not min(clip_grad, 1.0). Two steps, gradient norms 2
    and 0.5: LAMB's first step ignores the gradient's scale, not the second."""
    from timm.optim import Lamb
    from pretrain.engine.builders import build_optimizer
    from pretrain.engine.distributed import Dist
    from pretrain.engine.loop import clip_gradients
    cfg = load_config(find_config('vit_s'))
    cfg.optimizer.clip_grad = clip
    torch.manual_seed(0)
    start, grads = torch.randn(10, 10), [torch.randn(10, 10) for _ in range(2)]
    grads = [g * (n / g.norm()) for g, n in zip(grads, (2.0, 0.5))]
    runs = []
    for build in ('engine', 'reference'):
        model = torch.nn.Linear(10, 10, bias=False)
        model.weight.data.copy_(start)
        if build == 'engine':
            opt, lr = build_optimizer(model, cfg.optimizer, 2048, Dist(), 2048, 1)
        else:  # LAMB on the gradients clipped at `clip` only
            opt = Lamb(model.parameters(), lr=lr, weight_decay=cfg.optimizer.weight_decay, eps=cfg.optimizer.eps,
                       max_grad_norm=None)
        for g in grads:
            model.weight.grad = g.clone()
            if build == 'engine':  # the loop's clip
                clip_gradients(model.parameters(), clip)
            else:
                model.weight.grad *= min(1.0, clip / g.norm().item())
            opt.step()
        runs.append(model.weight.detach().clone())
    torch.testing.assert_close(runs[0], runs[1])


@pytest.mark.e2e
def test_compiled_training_equals_eager(imagenet_dir, tmp_path, monkeypatch):
    """train.compile=True with the config's mode (CUDA graphs on a GPU; on CPU torch.compile skips them) trains
    the whole model, ESD included, as one graph. With inductor drawing its random numbers as eager does
    (fallback_random), the weights after an epoch of cosub + ESD steps equal the eager run's."""
    import torch._inductor.config
    from torch._dynamo.utils import counters
    main(args(imagenet_dir, tmp_path / 'eager', epochs=1))
    monkeypatch.setattr(torch._inductor.config, 'fallback_random', True)
    counters.clear()
    main(args(imagenet_dir, tmp_path / 'compiled', epochs=1, options=['train.compile=True']))
    assert counters['stats']['unique_graphs'] == 1  # one graph: no break in the model
    assert_same_weights(weights(tmp_path / 'eager' / 'checkpoint.pth'),
                        weights(tmp_path / 'compiled' / 'checkpoint.pth'), exact=False)
    torch._dynamo.reset()


@pytest.mark.e2e
def test_two_compiled_ddp_processes_equal_one_eager(imagenet_dir, tmp_path):
    """train.compile=True under DDP compiles the DDP-wrapped model (graph split at DDP's buckets): the same
    weights as one eager process on the same global batch."""
    options = ['model.drop_path_rate=0.0', 'mixup.mixup_alpha=0.0', 'mixup.cutmix_alpha=0.0']
    main(args(imagenet_dir, tmp_path / 'one', epochs=1, options=options))
    run = two_processes(args(imagenet_dir, tmp_path / 'two', epochs=1, options=options + ['train.compile=True']))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    log = (tmp_path / 'two' / 'train.log').read_text()
    assert "model compiled: torch.compile(mode='reduce-overhead'), around DDP" in log
    assert_same_weights(weights(tmp_path / 'one' / 'checkpoint.pth'), weights(tmp_path / 'two' / 'checkpoint.pth'),
                        exact=False)


SIGNAL_ONE_RANK = """
import os, signal, sys
from pretrain.engine import Trainer
from pretrain.train import main
real_loss = Trainer._loss
def loss(self, logits, targets, teacher):  # SLURM may signal one task only: here rank 1, during step 1
    if self.d.rank == 1 and (self.epoch, self.step_in_epoch) == (0, 1) and not self.stop.signum:
        os.kill(os.getpid(), signal.SIGUSR1)
    return real_loss(self, logits, targets, teacher)
Trainer._loss = loss
sys.argv[0] = 'pretrain/train.py'
main()
"""


@pytest.mark.e2e
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(imagenet_dir, tmp_path):
    """The flags are all-reduced with each step's values and read one step later (engine/pending.py): rank 1's
    signal during step 1 is read by both ranks after step 2, which both finish before saving at step 3."""
    script = tmp_path / 'signal_rank1.py'
    script.write_text(SIGNAL_ONE_RANK)
    out = tmp_path / 'two'
    run = two_processes(args(imagenet_dir, out, epochs=1), script=script)
    assert run.returncode != 0, run.stdout[-2000:]  # both ranks exit 143
    ckpt = backbones.load_file(out / 'checkpoint.pth')
    assert (ckpt['epoch'], ckpt['step_in_epoch']) == (0, 3), run.stderr[-2000:]
    assert len(ckpt['rng']) == 2  # both ranks took part in the save
    assert 'SIGUSR1: stopped at epoch 0, step 3' in (out / 'train.log').read_text()
    assert run.stderr.count('exitcode  : 143') + run.stderr.count('exitcode: 143') >= 1, run.stderr[-3000:]


def test_eval_only_with_v2_and_real(imagenet_dir, tmp_path):
    main(args(imagenet_dir, tmp_path / 'run', epochs=1))
    v2 = tmp_path / 'v2'
    import numpy as np
    rng = np.random.default_rng(1)
    for c in range(4):
        write_image(v2 / str(c) / f'{c}.jpeg', rng, label=c)
    real = [[0], [], [1, 2], [1], [2], [2], [3], [3]]  # val images 1..8; an empty list is left out
    (tmp_path / 'real.json').write_text(json.dumps(real))
    record = main(args(imagenet_dir, tmp_path / 'run', '--eval', '--resume', epochs=1,
                       options=(f'data.v2_path={v2}', f'data.real_path={tmp_path / "real.json"}')))
    assert record['val_n'] == 8 and record['v2_n'] == 4 and 0 <= record['real_top1'] <= 100
    assert json.loads((tmp_path / 'run' / 'eval.json').read_text())['v2_n'] == 4


def test_index_is_cached(imagenet_dir, tmp_path, monkeypatch):
    from pretrain import data
    first = data.FolderIndex(imagenet_dir / 'train')
    monkeypatch.setattr(data.FolderIndex, '_scan', lambda *a: pytest.fail('listed the folder again'))
    second = data.FolderIndex(imagenet_dir / 'train')
    assert len(second) == len(first) == 32 and second.relpath(5) == first.relpath(5)


def test_sampler_covers_same_global_batches_for_any_world_size():
    from pretrain.data import GlobalOrderSampler
    one = list(GlobalOrderSampler(40, seed=3, repeats=3, global_batch=8))
    ranks = [list(GlobalOrderSampler(40, rank=r, world_size=4, seed=3, repeats=3, global_batch=8)) for r in range(4)]
    for step in range(5):
        per_rank = [x for r in ranks for x in r[step * 2:(step + 1) * 2]]
        assert sorted(per_rank) == sorted(one[step * 8:(step + 1) * 8])
    images = [i for i, _ in one]
    assert images[0] == images[1] == images[2]  # repeated augmentation: the same image three times in a row
    assert len({s for _, s in one}) == 40  # but each copy gets its own augmentation seed


# -- bad inputs: one clear line ---------------------------------------------------------------------------------
def run_error(argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return str(e.value.code)


def test_missing_and_empty_data_folder(tmp_path):
    msg = run_error(args(tmp_path / 'nowhere', tmp_path / 'o'))
    assert 'nowhere: no such folder' in msg and '\n' not in msg
    (tmp_path / 'empty' / 'train').mkdir(parents=True)
    assert 'no class sub-folders' in run_error(args(tmp_path / 'empty', tmp_path / 'o'))


def test_corrupt_images_are_skipped_and_counted(imagenet_dir, tmp_path):
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(imagenet_dir, data)
    bad = data / 'train' / 'n10000001' / 'n10000001_3.JPEG'
    bad.write_bytes(b'\xff\xd8 truncated jpeg')
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        main(args(data, tmp_path / 'skip', epochs=1, options=('data.max_bad_fraction=0.5', 'data.repeated_aug=1')))
    # a run's warnings go to its train.log (logging.captureWarnings), unless pytest's per-test recorder took over
    # warnings.showwarning after an earlier test in this process had set logging up: accept either place
    shown = (tmp_path / 'skip' / 'train.log').read_text() + ''.join(str(w.message) for w in caught)
    assert f'skipping unreadable image {bad}' in shown
    log = json.loads((tmp_path / 'skip' / 'log.jsonl').read_text().splitlines()[0])
    assert log['bad_images'] >= 1
    bad2 = data / 'train' / 'n10000002' / 'n10000002_3.JPEG'
    bad2.write_bytes(b'')
    msg = run_error(args(data, tmp_path / 'stop', epochs=1, options=('data.max_bad_fraction=0.0', 'data.repeated_aug=1')))
    assert 'unreadable images' in msg and '.JPEG' in msg


def test_batch_too_small_for_the_drop_rate(imagenet_dir, tmp_path):
    # (a rate outside [0, 1) is refused by the config's value check: tests/test_refusals.py)
    msg = run_error(args(imagenet_dir, tmp_path, batch=2, options=('model.drop_path_rate=0.05',
                                                                   'mixup.mixup_alpha=0.0', 'mixup.cutmix_alpha=0.0')))
    assert 'per-device batch of 4 samples' in msg and 'at least' in msg


def test_non_finite_loss_stops_and_keeps_last_checkpoint(imagenet_dir, tmp_path, monkeypatch):
    out = tmp_path / 'run'
    real_loss = engine.Trainer._loss
    def explode(self, logits, targets, teacher):  # noqa: E306
        loss = real_loss(self, logits, targets, teacher)
        return loss * float('nan') if self.epoch == 1 else loss
    monkeypatch.setattr(engine.Trainer, '_loss', explode)
    msg = run_error(args(imagenet_dir, out, epochs=2))
    assert 'non-finite loss' in msg and 'checkpoint.pth' in msg and '\n' not in msg
    # no teacher: the student's learning rate / clipping and the data are the causes it cannot rule out
    assert 'optimizer.lr=0.001' in msg and 'optimizer.clip_grad' in msg and 'the data' in msg
    assert 'teacher' not in msg and msg.endswith('run again with --resume')
    ckpt = backbones.load_file(out / 'checkpoint.pth')
    assert ckpt['epoch'] == 1 and all(torch.isfinite(v).all() for v in ckpt['model'].values())


@pytest.mark.parametrize('target', ['hard', 'soft'])
def test_a_nan_teacher_is_refused_where_it_enters(imagenet_dir, tmp_path, target, capsys):
    """A KD teacher whose weights are NaN is refused when it is loaded, in one line: with hard targets it would
    otherwise train silently (the argmax of NaN logits is class 0), with soft ones stop at the first step."""
    main(args(imagenet_dir, tmp_path / 'teacher', '--method', 'baseline', epochs=1))
    ckpt = backbones.load_file(tmp_path / 'teacher' / 'checkpoint.pth')
    ckpt['model'] = {k: v.fill_(float('nan')) if v.is_floating_point() else v for k, v in ckpt['model'].items()}
    teacher = tmp_path / 'nan_teacher.pth'
    backbones.save_file(ckpt, teacher)
    capsys.readouterr()
    assert run_error(args(imagenet_dir, tmp_path / 'kd', '--method', 'kd', '--teacher', str(teacher), epochs=1,
                          options=(f'kd.target={target}',))) == '2'
    err = capsys.readouterr().err
    assert err == f'error: --teacher {teacher}: its weights hold NaN or inf values; pass a trained teacher\n'
    assert not (tmp_path / 'kd').exists()  # refused before the run was accepted: nothing left behind


def test_non_finite_loss_with_a_kd_teacher_names_the_teacher(imagenet_dir, tmp_path, monkeypatch):
    """A non-finite loss in a KD run: the teacher's logits are among the causes named, beside the student's LR."""
    main(args(imagenet_dir, tmp_path / 'teacher', '--method', 'baseline', epochs=1))
    real_loss = engine.Trainer._loss
    def explode(self, logits, targets, teacher):  # noqa: E306
        return real_loss(self, logits, targets, teacher) * float('nan')
    monkeypatch.setattr(engine.Trainer, '_loss', explode)
    teacher = tmp_path / 'teacher' / 'checkpoint.pth'
    msg = run_error(args(imagenet_dir, tmp_path / 'kd', '--method', 'kd', '--teacher', str(teacher), epochs=1))
    assert f'the teacher --teacher {teacher} (its logits)' in msg and 'optimizer.lr=0.001' in msg and '\n' not in msg


def test_non_finite_loss_with_a_mean_teacher_names_it_beside_the_student(imagenet_dir, tmp_path, monkeypatch):
    """The EMA's weights follow the student's, so they cannot tell which went first: both are named."""
    real_loss = engine.Trainer._loss
    def explode(self, logits, targets, teacher):  # noqa: E306
        loss = real_loss(self, logits, targets, teacher)
        return loss * float('nan') if self.step_in_epoch == 1 else loss
    monkeypatch.setattr(engine.Trainer, '_loss', explode)
    msg = run_error(args(imagenet_dir, tmp_path, '--method', 'mean_teacher', epochs=1))
    assert 'the teacher of method=mean_teacher (its logits)' in msg and 'optimizer.lr=0.001' in msg, msg


def test_cpu_thread_plan_leaves_the_workers_their_cores_and_respects_the_user():
    from pretrain.engine.threads import plan_cpu_threads, set_wait_policy
    assert plan_cpu_threads(2, 2, {})[:2] == (1, 'PASSIVE')  # the demo: 2 workers on 2 cores, one model thread
    assert plan_cpu_threads(16, 10, {})[:2] == (6, 'PASSIVE')
    assert plan_cpu_threads(4, 0, {})[:2] == (4, 'PASSIVE')
    assert plan_cpu_threads(16, 10, {'OMP_NUM_THREADS': '3'})[:2] == (None, 'PASSIVE')  # torch already reads it
    assert plan_cpu_threads(16, 10, {'OMP_WAIT_POLICY': 'ACTIVE'})[:2] == (6, None)
    assert plan_cpu_threads(16, 10, {'COSUB_CPU_THREADS': 'off'})[:2] == (None, None)
    env = {}
    set_wait_policy(env)
    assert env == {'OMP_WAIT_POLICY': 'PASSIVE'}
    env = {'OMP_WAIT_POLICY': 'active'}
    set_wait_policy(env)
    assert env == {'OMP_WAIT_POLICY': 'active'}


def test_trainer_sets_the_cpu_threads_once_at_start(imagenet_dir, tmp_path, monkeypatch):
    from pretrain.engine import threads
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.delenv('COSUB_CPU_THREADS', raising=False)
    monkeypatch.setattr(threads, 'available_cores', lambda: 3)
    before = torch.get_num_threads()
    try:
        engine.Trainer(parse(args(imagenet_dir, tmp_path, options=('data.num_workers=2',))))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_all_size_configs_load():
    for name in ('vit_s', 'vit_m', 'vit_b', 'vit_l', 'vit_h'):
        for suffix in ('', '_in21k', '_ft_in1k'):
            cfg = load_config(find_config(name + suffix))
            assert cfg.model.name == name and 0 <= cfg.model.drop_path_rate < 1
    assert load_config(find_config('vit_l')).model.drop_path_rate == 0.45
    assert load_config(find_config('vit_l_in21k')).loss.type == 'ce'
    assert load_config(find_config('vit_l_ft_in1k')).optimizer.layer_decay == 0.8


def test_submodel_analysis_table_and_plots(imagenet_dir, tmp_path):
    from pretrain import analysis
    main(args(imagenet_dir, tmp_path / 'run', epochs=1, options=('model.depth=4',)))
    out = tmp_path / 'analysis'
    results = analysis.main([str(tmp_path / 'run' / 'checkpoint.pth'), '--labels', 'cosub', '--output-dir', str(out),
                             '--draws', '2', '--min-blocks', '1', '--num-workers', '0', '--device', 'cpu'])
    r = results['cosub']
    assert sorted(r['blocks_kept']) == [1, 2, 3, 4] and r['blocks_kept'][4] == r['full']
    assert len(r['one_removed']) == 4
    for name in ('submodels.md', 'submodels.json', 'submodels.png', 'block_ablation.png'):
        assert (out / name).is_file(), name
    assert '| blocks kept | cosub |' in (out / 'submodels.md').read_text()


@pytest.mark.e2e
def test_demo_runs_end_to_end(tmp_path):
    """The README's demo command, every step shortened: pretraining, analysis, transfer, mim train / test / TTA."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, '-m', 'pretrain.demo', '--quick', '--output-dir', str(tmp_path)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((tmp_path / 'summary.json').read_text())
    depths = {f'{label}: top-1 with {n} of 6 blocks' for label in ('cosub', 'baseline (no cosub)') for n in (5, 4, 3)}
    assert set(summary) == {'pretrain val top-1', 'baseline val top-1', 'cosub: mean top-1 of its submodels',
                            'baseline (no cosub): mean top-1 of its submodels', 'transfer val top-1',
                            'transfer from scratch val top-1', 'segmentation mIoU (single scale)',
                            'segmentation mIoU (multi-scale + flip)'} | depths
    assert all(0 <= v <= 100 for v in summary.values())
    for name in ('pretrain/training_curves.png', 'pretrain_baseline/training_curves.png',
                 'pretrain/analysis/submodels.png', 'transfer/log.jsonl', 'segmentation/iter_4.pth'):
        assert (tmp_path / name).is_file(), name
    # the submodel analysis compares both runs (figure 4 in miniature)
    table = (tmp_path / 'pretrain/analysis/submodels.md').read_text()
    assert '| blocks kept | cosub | baseline (no cosub) |' in table


@pytest.mark.e2e
def test_fsdp_two_processes_equal_one_and_resume(imagenet_dir, tmp_path):
    """train.fsdp=True shards the model over 2 processes (gloo here); same weights as 1 process, and resumable.
    7 validation images, one per batch: the ranks evaluate 4 and 3 (every forward pass must be matched)."""
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(imagenet_dir, data)
    next((data / 'val').glob('*/*.JPEG')).unlink()
    imagenet_dir = data
    options = ['model.drop_path_rate=0.0', 'mixup.mixup_alpha=0.0', 'mixup.cutmix_alpha=0.0', 'eval_batch_size=1']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, 'pretrain/train.py', *args(imagenet_dir, tmp_path / 'one', epochs=2, options=options)],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    sharded = args(imagenet_dir, tmp_path / 'fsdp', epochs=2, options=options + ['train.fsdp=True'])
    run = two_processes(sharded)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    ckpt = backbones.load_file(tmp_path / 'fsdp' / 'checkpoint.pth')
    assert ckpt['fsdp'] and ckpt['epoch'] == 2
    log = [json.loads(line) for line in (tmp_path / 'fsdp' / 'log.jsonl').read_text().splitlines()]
    assert log[-1]['val_n'] == 7
    assert_same_weights(weights(tmp_path / 'one' / 'checkpoint.pth'), ckpt['model'], exact=False)
    resumed = args(imagenet_dir, tmp_path / 'fsdp', '--resume', epochs=3, options=options + ['train.fsdp=True'])
    run = two_processes(resumed)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert 'resumed from' in run.stdout and backbones.load_file(tmp_path / 'fsdp' / 'checkpoint.pth')['epoch'] == 3
