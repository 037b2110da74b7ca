"""train.grad_checkpointing (activation checkpointing per residual block, timm's --grad-checkpointing) trains
exactly the weights of a run without it, through the real trainer: ESD's kept samples and masking's masks are the
same in a block's recomputation as in its forward (backbones/esd.py StochasticDepthBlock). Eager here, for our ViT
(ESD draws outside the blocks, passed in) and a timm family (drawn inside each block, rerun from the preserved RNG
state); torch.compile (inductor on CPU) and FSDP (2 gloo processes) in the e2e tests. Every timm family, block by
block, is in tests/test_timm_archs.py. And ViT-g: its dry run, and a few steps at toy width."""
import os
import subprocess
import sys

import pytest
import torch

import backbones
from backbones import esd
from pretrain.train import train as main

from conftest import ROOT
from test_pretrain import assert_same_weights, weights

TINY_VIT = ['model.name=vit_t', 'model.embed_dim=32', 'model.depth=2', 'model.num_heads=2', 'model.patch_size=8']
# timm's own ViT (vision_transformer.Block through ESDViTBlock, which draws its subsets inside the block)
TINY_TIMM_VIT = ['model.name=deit3_small_patch16_224', 'model.embed_dim=32', 'model.depth=2', 'model.num_heads=2',
                 'model.patch_size=8']


def args(data, out, model, *options, epochs=1, cfg='vit_s', size=32):
    return ['--cfg', cfg, '--data-path', str(data), '--output-dir', str(out), '--epochs', str(epochs),
            '--batch-size', '8', '--input-size', str(size), '--cfg-options', *model, 'data.num_workers=0',
            'optimizer.lr=1e-3', *options]


def count_checkpointed_calls(monkeypatch) -> list:
    """Record every checkpointed block call (esd.py's `checkpoint`), so a test sees checkpointing really ran."""
    calls, real = [], esd.checkpoint
    monkeypatch.setattr(esd, 'checkpoint', lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize('model,mode', [(TINY_VIT, 'esd'), (TINY_VIT, 'mask'), (TINY_TIMM_VIT, 'esd')],
                         ids=['vit-esd', 'vit-mask', 'timm-vit-esd'])
def test_checkpointed_training_trains_the_same_weights(imagenet_dir, tmp_path, monkeypatch, model, mode):
    options = [f'model.drop_path_mode={mode}', 'model.drop_path_rate=0.25']
    main(args(imagenet_dir, tmp_path / 'plain', model, *options))
    calls = count_checkpointed_calls(monkeypatch)
    main(args(imagenet_dir, tmp_path / 'checkpointed', model, *options, 'train.grad_checkpointing=True'))
    assert len(calls) == 4 * 2  # 4 steps (32 images, batch 8) x 2 blocks
    assert 'activation checkpointing: 2 residual blocks' in (tmp_path / 'checkpointed' / 'train.log').read_text()
    assert_same_weights(weights(tmp_path / 'plain' / 'checkpoint.pth'),
                        weights(tmp_path / 'checkpointed' / 'checkpoint.pth'))


def test_vit_g_dry_runs_and_trains_at_toy_width(imagenet_dir, tmp_path, monkeypatch, capsys):
    """vit_g_in21k says what it needs; at toy width (its 40 blocks and 16 heads, 32 channels) its config trains
    through the real trainer with activation checkpointing."""
    main(['--cfg', 'vit_g_in21k', '--dry-run'])
    out = capsys.readouterr().out
    assert 'vit_g at 224x224: 1012.7M parameters' in out
    assert 'batch             global 2048 = 32 GPUs x 64 per device' in out
    assert 'sharded over 32 GPUs (train.fsdp=True)' in out
    assert 'train.grad_checkpointing=True): 40 blocks x 128 images (64 x 2) x 257 tokens x 1408 wide' in out
    calls = count_checkpointed_calls(monkeypatch)
    main(['--cfg', 'vit_g_in21k', '--data-path', str(imagenet_dir), '--output-dir', str(tmp_path), '--epochs', '1',
          '--batch-size', '8', '--input-size', '28', '--cfg-options', 'model.embed_dim=32', 'data.num_workers=0'])
    assert len(calls) == 4 * 40  # 4 steps x 40 blocks, each checkpointed
    ckpt = backbones.load_file(tmp_path / 'checkpoint.pth')
    assert ckpt['epoch'] == 1 and len({k.split('.')[1] for k in ckpt['model'] if k.startswith('blocks.')}) == 40
    assert ckpt['model']['blocks.0.mlp.fc1.weight'].shape == (int(32 * 48 / 11), 32)  # ViT-g's MLP ratio


@pytest.mark.e2e
def test_compiled_checkpointed_training_equals_compiled(imagenet_dir, tmp_path, monkeypatch):
    """Under torch.compile (inductor; random numbers drawn as eager draws them: fallback_random) the checkpointed
    blocks give the weights of the compiled run without checkpointing, in one graph."""
    import torch._inductor.config
    from torch._dynamo.utils import counters
    monkeypatch.setattr(torch._inductor.config, 'fallback_random', True)
    options = ['model.drop_path_rate=0.25', 'train.compile=True']
    main(args(imagenet_dir, tmp_path / 'plain', TINY_VIT, *options))
    torch._dynamo.reset()
    counters.clear()
    main(args(imagenet_dir, tmp_path / 'checkpointed', TINY_VIT, *options, 'train.grad_checkpointing=True'))
    assert counters['stats']['unique_graphs'] == 1  # the checkpointed blocks trace into the model's one graph
    torch._dynamo.reset()
    assert_same_weights(weights(tmp_path / 'plain' / 'checkpoint.pth'),
                        weights(tmp_path / 'checkpointed' / 'checkpoint.pth'), exact=False)


def two_processes(argv) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                           'pretrain/train.py', *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.e2e
def test_fsdp_checkpointed_training_equals_fsdp(imagenet_dir, tmp_path):
    """train.fsdp=True over 2 gloo processes: checkpointed blocks (FSDP's hooks rerun inside the recomputation)
    train the weights of the same sharded run without checkpointing."""
    options = ['model.drop_path_rate=0.25', 'train.fsdp=True']
    for out, extra in (('plain', []), ('checkpointed', ['train.grad_checkpointing=True'])):
        run = two_processes(args(imagenet_dir, tmp_path / out, TINY_VIT, *options, *extra))
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert backbones.load_file(tmp_path / 'checkpointed' / 'checkpoint.pth')['fsdp']
    assert_same_weights(weights(tmp_path / 'plain' / 'checkpoint.pth'),
                        weights(tmp_path / 'checkpointed' / 'checkpoint.pth'))
