"""REPRODUCE.md and the configs stay runnable: every documented command parses and dry-runs, every config resolves
and builds its model (meta device), every recipe value in a base config cites a source, and the recipe checks hold.

Many commands and config files resolve to the same settings (a config file run as it is, a command that only names
its output folder): each distinct set of settings is dry-run once (dry_run_once), the others only parse."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from pretrain import dry_run as dry_run_lib
from pretrain.config import load_config, parse

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs'
PRETRAIN_CONFIGS = sorted(p for p in CONFIGS.glob('*.py') if not p.stem.startswith('upernet'))
TRANSFER_CONFIGS = sorted((CONFIGS / 'transfer').glob('*.py'))


def reproduce_commands():
    """(line number, command) of every command in the bash blocks of REPRODUCE.md."""
    text = (ROOT / 'REPRODUCE.md').read_text()
    out, in_block = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith('```'):
            in_block = line.strip() == '```bash' if not in_block else False
            continue
        if in_block and line.strip() and not line.lstrip().startswith('#'):
            out.append((number, line.strip()))
    return out


COMMANDS = reproduce_commands()


def entry_point(script: str):
    """(main, task, config flag) of an entry point."""
    if script == 'pretrain/train.py':
        from pretrain import train
        return train.main, 'pretrain', '--cfg'
    if script == 'transfer/finetune.py':
        from transfer import finetune
        return finetune.main, 'transfer', '--dataset'
    raise AssertionError(f'unknown entry point {script}')


# Paths a dry run never opens: two configs that differ only in them dry-run alike.
NOT_READ = ('output_dir', 'config_file', 'finetune', 'resume', 'data.path')
DRY_RUNS = {}  # settings_key -> what its dry run printed


def settings_key(cfg) -> str:
    tree = cfg.to_dict()
    for key in NOT_READ:
        group, _, leaf = key.rpartition('.')
        (tree.get(group, {}) if group else tree).pop(leaf, None)
    return json.dumps(tree, sort_keys=True, default=repr)


def dry_run_once(cfg) -> str:
    """dry_run(cfg), run for the first config with these settings and then remembered."""
    key = settings_key(cfg)
    if key not in DRY_RUNS:
        DRY_RUNS[key] = dry_run_lib.dry_run(cfg)
    return DRY_RUNS[key]


def command_dry_run(argv) -> str:
    """What `python <argv> --dry-run` prints: its entry point's config (parsed as the entry point parses it), dry-run
    once per distinct settings (test_entry_points_print_the_dry_run: main does no more)."""
    _, task, name_flag = entry_point(argv[0])
    return dry_run_once(parse(argv[1:], task=task, name_flag=name_flag))


def dry_run_command(argv):
    """Run an entry point's main in-process with --dry-run; returns what it printed (exit status must be 0)."""
    main = entry_point(argv[0])[0]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            main(argv[1:] + ['--dry-run'])
        except SystemExit as e:
            assert e.code in (0, None), f'exit {e.code}: {buffer.getvalue()[-2000:]}'
    return buffer.getvalue()


def test_reproduce_lists_commands_for_every_table():
    text = (ROOT / 'REPRODUCE.md').read_text()
    for item in [f'Table {i}' for i in range(1, 15)] + ['Figure 4', 'Figure 5', 'Figure B.1', 'Table B.1',
                                                       'Table B.2', 'B.4', 'supplement D']:
        assert item in text, item
    assert len(COMMANDS) > 80


@functools.lru_cache(maxsize=None)
def segmentation_config(path: str):
    from mmengine.config import Config
    return Config.fromfile(str(ROOT / path))


@pytest.mark.parametrize('number,command', COMMANDS, ids=[f'line{n}' for n, _ in COMMANDS])
def test_documented_command_dry_runs(number, command):
    argv = shlex.split(command)
    if argv[0] == 'python' and argv[1] in ('pretrain/train.py', 'transfer/finetune.py'):
        out = command_dry_run(argv[1:])
        assert 'learning rate' in out and 'GPU-hours' in out, out
    elif argv[0] == 'mim':  # segmentation: the config must resolve (MMSeg runs it)
        assert argv[1] in ('train', 'test') and argv[2] == 'mmseg'
        segmentation_config(argv[3])
    elif argv[:2] == ['python', '-m']:
        assert importlib.util.find_spec(argv[2]) is not None, argv[2]
    else:
        raise AssertionError(f'REPRODUCE.md line {number}: not a command this test knows: {command}')


@pytest.mark.parametrize('argv', [['pretrain/train.py', '--cfg', 'vit_l', '--method', 'kd', '--teacher', 'regnety.pth'],
                                  ['transfer/finetune.py', '--dataset', 'flowers']], ids=['pretrain', 'transfer'])
def test_entry_points_print_the_dry_run(argv):
    """An entry point's --dry-run prints dry_run() of the config it parses, exit status 0."""
    _, task, name_flag = entry_point(argv[0])
    assert dry_run_command(argv) == dry_run_lib.dry_run(parse(argv[1:], task=task, name_flag=name_flag)) + '\n'


@pytest.mark.parametrize('path', PRETRAIN_CONFIGS + TRANSFER_CONFIGS, ids=lambda p: p.stem)
def test_every_config_dry_runs(path):
    cfg = load_config(path)
    text = dry_run_once(cfg)
    if cfg.model.get('name'):  # built on the meta device: its size is printed
        assert re.search(r'[\d.]+M parameters', text), text
    assert f'GPUs              {cfg.dry_run.gpus}' in text


def source_comment_offenders(path: Path):
    """Assignment lines with no comment on them and no comment line heading their block."""
    out, covered = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s:
            covered = False
        elif s.startswith('#'):
            covered = True
        elif '#' not in line and re.search(r'(?<![=!<>])=(?!=)', line) and not covered:
            out.append(f'{path.name}:{number}: {s}')
    return out


def test_recipe_values_cite_a_source():
    paths = sorted((CONFIGS / '_base_').glob('*.py')) + [p for p in PRETRAIN_CONFIGS + TRANSFER_CONFIGS
                                                          + sorted(CONFIGS.glob('upernet_vit*.py'))
                                                          if 'demo' not in p.stem and p.stem != 'digits']
    offenders = [o for p in paths for o in source_comment_offenders(p)]
    assert not offenders, '\n'.join(offenders)


# -- values the issue pinned down --------------------------------------------------------------------------------
def test_finetune_and_baseline_recipes():
    ft = load_config(CONFIGS / 'vit_b_ft_in1k.py')
    assert (ft.data.train_transform.crop, ft.data.repeated_aug, ft.mixup.mixup_alpha, ft.mixup.cutmix_alpha) == \
        ('src', 1, 0.0, 1.0)
    assert (ft.loss.type, ft.loss.label_smoothing, ft.optimizer.weight_decay, ft.epochs) == ('ce', 0.1, 0.02, 50)
    from pretrain.engine.builders import learning_rate
    assert learning_rate(ft.optimizer, 2048) == pytest.approx(1e-4 * 2)  # eq. A.2 with C_LD = 2
    rates = {k: load_config(CONFIGS / f'vit_{k}_ft_in1k.py').model.drop_path_rate for k in 'sblh'}
    assert rates == {'s': 0.05, 'b': 0.15, 'l': 0.4, 'h': 0.45}
    official = {'s': (4e-3, 224), 'b': (3e-3, 192), 'l': (3e-3, 192), 'h': (3e-3, 154)}
    for k, (lr, size) in official.items():
        cfg = load_config(CONFIGS / f'deit3_vit_{k}.py')
        assert (cfg.optimizer.base_lr, cfg.optimizer.weight_decay, cfg.input_size, cfg.method) == \
            (lr, 0.05, size, 'baseline')
    assert load_config(CONFIGS / 'vit_b.py').optimizer.eps == 1e-8  # DeiT III --opt-eps
    long = load_config(CONFIGS / 'vit_l_in21k_270ep.py')
    assert (long.epochs, long.model.drop_path_rate) == (270, pytest.approx(0.35))
    assert load_config(CONFIGS / 'vit_l_in21k.py').loss.type == 'ce'


def test_transfer_recipe_follows_the_authors():
    for name in ('cifar10', 'cifar100', 'cars', 'flowers'):
        cfg = load_config(CONFIGS / 'transfer' / f'{name}.py')
        o = cfg.optimizer
        assert (o.type, o.base_lr, o.base_batch_size, o.weight_decay, cfg.epochs, cfg.batch_size) == \
            ('sgd', 0.01, 768, 1e-4, 1000, 768), name
    inat = load_config(CONFIGS / 'transfer' / 'inat19.py')
    assert (inat.optimizer.type, inat.optimizer.base_lr, inat.epochs, inat.model.drop_path_rate) == \
        ('adamw', 7.5e-5, 360, 0.1)
    assert inat.data.num_train_images == 265240  # supplement Table A.2


def test_bce_with_label_smoothing_is_refused(capsys):
    from pretrain import train
    with pytest.raises(SystemExit) as e:
        train.main(['--cfg', 'vit_s_in21k', '--cfg-options', 'loss.type=bce'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "loss.type='bce' with loss.label_smoothing=0.1" in err


def test_layer_decay_conventions():
    import backbones
    model = backbones.create_model('vit_t', num_classes=10, depth=4)

    def scales(convention):
        groups = backbones.layer_decay_param_groups(model, 0.05, 0.5, convention=convention)
        return {n: g['lr_scale'] for g in groups for n in g['names']}
    ours, beit = scales('cosub'), scales('beit')
    assert ours['blocks.3.attn.qkv.weight'] == 1.0 and beit['blocks.3.attn.qkv.weight'] == 0.5
    assert ours['blocks.0.attn.qkv.weight'] == 0.5 ** 3 and beit['blocks.0.attn.qkv.weight'] == 0.5 ** 4
    assert ours['pos_embed'] == 0.5 ** 4 and beit['pos_embed'] == 0.5 ** 5
    assert ours['head.weight'] == beit['head.weight'] == 1.0
    with pytest.raises(ValueError, match="convention 'mmseg'"):
        backbones.layer_decay_param_groups(model, 0.05, 0.5, convention='mmseg')


# -- the dry-run's derived values ---------------------------------------------------------------------------------
def test_dry_run_values_and_measured_cost(tmp_path, monkeypatch):
    cfg = load_config(CONFIGS / 'vit_l.py')
    text = dry_run_lib.dry_run(cfg)
    assert 'global 2048 = 32 GPUs x 64 per device x 1 accumulation step(s)' in text
    assert 'per-device batch 128 (64 x 2) -> effective rate 0.4531' in text
    assert '800 epochs x 625 steps (1,281,167 training images / 2048) = 500,000 steps' in text
    monkeypatch.setattr(dry_run_lib, 'MEASURED_STEP_FILE', tmp_path / 'absent.json')
    assert 'no measured step time' in dry_run_lib.dry_run(cfg)
    measured = tmp_path / 'pretrain_step_cuda.json'
    measured.write_text(json.dumps({'results': [
        {'model': 'vit_l', 'batch': 64, 'img_size': 224, 'baseline': {'time_ms': 200.0, 'img_per_s': {'eager': 320.0}},
         'cosub_esd': {'time_ms': 250.0, 'img_per_s': {'eager': 256.0}}, 'mfu': 0.4}]}))
    monkeypatch.setattr(dry_run_lib, 'MEASURED_STEP_FILE', measured)
    hours = 500_000 * 2048 / 256.0 / 3600
    assert f'GPU-hours         {hours:,.0f} (' in dry_run_lib.dry_run(cfg)
    assert str(measured) in dry_run_lib.dry_run(cfg)  # says which file it used
    # another model and resolution: scaled by forward FLOPs from the nearest measured one
    cfg = load_config(CONFIGS / 'vit_h.py')
    assert 'scaled by forward FLOPs x' in dry_run_lib.dry_run(cfg)
    # ESD-free runs of the baseline use the measured baseline step
    cfg = load_config(CONFIGS / 'deit3_vit_l.py')
    assert 'baseline step of vit_l@224' in dry_run_lib.dry_run(cfg)


def test_dry_run_accumulates_when_the_micro_batch_is_set():
    cfg = load_config(CONFIGS / 'vit_b_ft_in1k_448.py')
    cfg.merge_from_dict({'micro_batch_size': 16})
    assert 'global 2048 = 32 GPUs x 16 per device x 4 accumulation step(s)' in dry_run_lib.dry_run(cfg)


def test_compute_table_matches_the_dry_run():
    """The GPU-hours REPRODUCE.md lists are what --dry-run computes today from the measured step."""
    if dry_run_lib.measured_step() is None:
        pytest.skip('no measured step time')
    text = (ROOT / 'REPRODUCE.md').read_text()
    rows = re.findall(r'^\| (\w+) \| [^|]+ \| \d+ \| [\d,]+ \| (\d+) \| ([\d,]+) \|', text, flags=re.M)
    assert len(rows) >= 60
    for name, gpus, hours in rows:
        cfg = load_config(CONFIGS / f'{name}.py')
        out = dry_run_once(cfg)
        assert f'GPUs              {gpus} ' in out, name
        assert f'GPU-hours         {hours} (' in out, (  # a new measured step changes every row
            f'{name}: REPRODUCE.md says {hours} GPU-hours, --dry-run now says: {out.splitlines()[-1]}; update the '
            'compute table from `python pretrain/train.py --cfg NAME --dry-run`')


def test_table_4_rows_match_their_dry_runs():
    """Each Table 4 row's commands exist for ViT-L and ViT-H, name their method, and the H200-hours the row lists are
    what --dry-run prints for that method (its Figure 2 cost applied to the measured step)."""
    if dry_run_lib.measured_step() is None:
        pytest.skip('no measured step time')
    text = (ROOT / 'REPRODUCE.md').read_text()
    section = text.split('## Table 4:', 1)[1].split('\n## ', 1)[0]
    rows = re.findall(r'^\| \(\w\)(?:\+\(e\))? \| [^|]*\(`(\w+)`[^|]*\| [\d.]+ \| [\d.]+ \| [^|]+ \| ([\d,]+) / ([\d,]+) \|$',
                      section, flags=re.M)
    assert [r[0] for r in rows] == ['baseline', 'kd', 'mean_teacher', 'cotrain', 'cosub', 'kd_cosub']
    commands = [shlex.split(c) for n, c in COMMANDS if f'--output-dir outputs/t4_' in c]
    for method, *hours in rows:
        for cfg, expected in zip(('vit_l', 'vit_h'), hours):
            argv = next(a for a in commands if a[a.index('--cfg') + 1] == cfg and a[a.index('--method') + 1] == method)
            out = command_dry_run(argv[1:])
            assert re.search(rf'^method +{method}: ', out, flags=re.M), out
            assert f'GPU-hours         {expected} (' in out, (method, cfg, out.splitlines()[-1])
