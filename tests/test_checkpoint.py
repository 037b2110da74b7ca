"""Checkpoint loading: our format, official DeiT III files, timm files, safety and atomic writes."""
import os
import pickle

import pytest
import timm
import torch

import backbones
from backbones import CheckpointError, create_model, load_checkpoint, save_file
from backbones.export_backbone import export_backbone


def tiny(**kw):
    args = dict(embed_dim=48, depth=2, num_heads=3, img_size=32, patch_size=8, num_classes=5)
    args.update(kw)
    return create_model('vit_t', **args)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_our_format(tmp_path):
    torch.manual_seed(0)
    src, dst = tiny(), tiny()
    save_file({'format': 'cosub', 'model': src.state_dict(), 'epoch': 3}, tmp_path / 'ckpt.pth')
    report = load_checkpoint(dst, tmp_path / 'ckpt.pth', strict=True)
    assert report.ok and same_weights(src, dst)


def test_round_trip_safetensors_and_ddp_prefix(tmp_path):
    src, dst = tiny(), tiny()
    save_file({f'module.{k}': v for k, v in src.state_dict().items()}, tmp_path / 'w.safetensors')
    assert load_checkpoint(dst, tmp_path / 'w.safetensors', strict=True).ok
    assert same_weights(src, dst)


def test_same_logits_as_timm_deit3(tmp_path):
    """Our ViT-S with timm's deit3_small weights gives timm's logits (to 1e-5)."""
    torch.manual_seed(0)
    ref = timm.create_model('deit3_small_patch16_224').eval()
    torch.save(ref.state_dict(), tmp_path / 'deit3_small.pth')
    ours = create_model('vit_s').eval()
    assert load_checkpoint(ours, tmp_path / 'deit3_small.pth', strict=True).ok
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=0)


def test_official_deit3_format(tmp_path):
    """Official files: weights under 'model', LayerScale as gamma_1/gamma_2, plus argparse args."""
    import argparse
    src = tiny()
    official = {k.replace('ls1.gamma', 'gamma_1').replace('ls2.gamma', 'gamma_2'): v
                for k, v in src.state_dict().items()}
    assert any('gamma_1' in k for k in official)
    torch.save({'model': official, 'args': argparse.Namespace(model='deit_tiny'), 'epoch': 799},
               tmp_path / 'official.pth')
    dst = tiny()
    report = load_checkpoint(dst, tmp_path / 'official.pth', strict=True)
    assert same_weights(src, dst)
    assert 'gamma_1' in str(report)


def test_pos_embed_interpolated_and_head_replaced(tmp_path):
    src = tiny(img_size=32, num_classes=5)
    torch.save({'model': src.state_dict()}, tmp_path / 'c.pth')
    dst = tiny(img_size=64, num_classes=7)
    report = load_checkpoint(dst, tmp_path / 'c.pth')
    text = str(report)
    assert dst.pos_embed.shape == (1, 64, 48)
    assert 'interpolated from a 4x4 to a 8x8 grid' in text
    assert 'classifier head.weight replaced' in text and not report.missing


def test_timm_vit_with_class_slot_gives_same_activations(tmp_path):
    """timm's plain ViT keeps a position for the class token; folding it into cls_token is exact."""
    ref = timm.create_model('vit_tiny_patch16_224', img_size=32, patch_size=8, num_classes=5, depth=2,
                            init_values=1e-3).eval()
    torch.save(ref.state_dict(), tmp_path / 'vit.pth')
    ours = create_model('vit_t', img_size=32, patch_size=8, num_classes=5, depth=2, init_values=1e-3).eval()
    report = load_checkpoint(ours, tmp_path / 'vit.pth', strict=True)
    assert 'class-token slot folded' in str(report)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


class Exploit:
    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null',))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'model': tiny().state_dict(), 'payload': Exploit()}, path)
    with pytest.raises(CheckpointError, match=r'evil\.pth: refused to load.*(posix|os)\.system.*allow_pickle=True'):
        load_checkpoint(tiny(), path)
    # the explicit opt-in reads it (only for files one trusts)
    assert load_checkpoint(tiny(), path, allow_pickle=True).ok


def test_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match='no such checkpoint file'):
        load_checkpoint(tiny(), tmp_path / 'missing.pth')
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='junk.pth: not a readable torch checkpoint'):
        load_checkpoint(tiny(), tmp_path / 'junk.pth')
    torch.save({'epoch': 1, 'notes': 'x'}, tmp_path / 'empty.pth')
    with pytest.raises(CheckpointError, match="empty.pth: no weights found"):
        load_checkpoint(tiny(), tmp_path / 'empty.pth')
    torch.save({'model': {'foo.weight': torch.zeros(1)}}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match='missing.*unexpected'):
        load_checkpoint(tiny(), tmp_path / 'other.pth', strict=True)


def test_atomic_write_keeps_last_good_file(tmp_path, monkeypatch):
    path = tmp_path / 'checkpoint.pth'
    save_file({'model': {'w': torch.ones(3)}}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt('killed while writing')
    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(KeyboardInterrupt):
        save_file({'model': {'w': torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(backbones.load_file(path)['model']['w'], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ['checkpoint.pth']  # no temporary file left behind


def test_export_backbone(tmp_path):
    src = tiny()
    save_file({'format': 'cosub', 'model_name': 'vit_t', 'model': src.state_dict(), 'optimizer': {}},
              tmp_path / 'cls.pth')
    for name in ('bb.pth', 'bb.safetensors'):
        info = export_backbone(tmp_path / 'cls.pth', tmp_path / name)
        assert info['dropped'] == 2
        backbone = tiny(num_classes=0)
        assert load_checkpoint(backbone, tmp_path / name, strict=True).ok
    assert backbones.load_file(tmp_path / 'bb.pth')['model_name'] == 'vit_t'
