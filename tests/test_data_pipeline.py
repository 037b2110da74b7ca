"""The loader (pretrain/data/: uint8 workers, JPEG draft decoding) and the device augmentation
(pretrain/augment.py). CPU only, fast; speed is measured by benchmarks/data_pipeline.py, not here."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate
from torchvision.transforms.v2 import functional as TF

from pretrain import augment as A
from pretrain import data as D
from pretrain.data import loader as L, transforms as T  # where the names that tests replace are used

TRAIN = dict(crop='rrc', rrc_scale=(0.08, 1.0), hflip=0.5, three_augment=True, color_jitter=0.3)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def smooth_jpeg(path, width, height, seed=0, quality=95, cell=64):
    """Smooth content (blobs of about `cell` pixels) whose downscaled versions are well defined."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (height // cell + 2, width // cell + 2, 3)).astype(np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.BICUBIC)
    img.save(path, quality=quality)
    return path


def params_batch(n, seed=0):
    t = D.TrainTransform(TRAIN, 16)
    import random
    return default_collate([t.device_params(random.Random(seed + i)) for i in range(n)])


def test_workers_return_uint8_with_device_params(imagenet_dir):
    ds = D.ImageFolderDataset(D.FolderIndex(imagenet_dir / 'train'))
    train = D.TransformedDataset(ds, D.build_train_transform(TRAIN, 32))
    image, label, index, bad, params = train[(3, 12345)]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and bad == '' and index == 3
    assert set(params) == {'three_augment', 'blur_sigma', 'jitter', 'jitter_order'}
    assert 0 <= params['three_augment'] < 3 and 0.1 <= params['blur_sigma'] <= 2.0
    assert ((params['jitter'] >= 0.7) & (params['jitter'] <= 1.3)).all()
    assert sorted(params['jitter_order'].tolist()) == [0, 1, 2]
    again = train[(3, 12345)]  # same seed, same sample: identical
    assert torch.equal(again[0], image) and all(torch.equal(again[4][k], v) for k, v in params.items())
    assert not torch.equal(train[(3, 999)][0], image)
    val = D.TransformedDataset(ds, D.build_eval_transform(32, 0.875), substitute_bad=False)
    image, _, _, bad, params = val[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and params == {} and bad == ''
    out = A.augment(image[None], {}, MEAN, STD)  # evaluation: normalisation only
    expected = (image[None].float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5)


def test_device_augment_batched_equals_per_sample():
    torch.manual_seed(0)
    n = 9
    images = torch.randint(0, 256, (n, 3, 20, 24), dtype=torch.uint8)
    params = params_batch(n)
    params['three_augment'] = torch.arange(n) % 3  # every op appears
    out = A.augment(images, params, MEAN, STD)
    assert out.dtype == torch.float32 and out.shape == images.shape
    for i in range(n):
        alone = A.augment(images[i:i + 1], {k: v[i:i + 1] for k, v in params.items()}, MEAN, STD)
        if params['three_augment'][i] == A.BLUR:  # a convolution's summation order may depend on the batch
            assert torch.allclose(out[i], alone[0], atol=1e-4)
        else:
            assert torch.equal(out[i], alone[0])
    assert torch.equal(out, A.augment(images, params, MEAN, STD))  # a run reproduces itself


def test_device_ops_follow_the_3_augment_definitions():
    torch.manual_seed(1)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    f = x.float()
    gray = A.three_augment(f, torch.tensor([A.GRAYSCALE] * 2), torch.ones(2))
    # PIL's convert('L') weights 0.299/0.587/0.114 (DeiT III greys PIL images); torchvision's float op uses 0.2989
    assert torch.allclose(gray, TF.rgb_to_grayscale(f / 255, num_output_channels=3) * 255, atol=0.05)
    solar = A.three_augment(f, torch.tensor([A.SOLARIZE] * 2), torch.ones(2))
    assert torch.equal(solar, torch.where(x >= 128, 255 - x, x).float())  # PIL's ImageOps.solarize(img, 128)
    sigma = torch.tensor([0.5, 2.0])
    blur = A.three_augment(f, torch.tensor([A.BLUR] * 2), sigma)
    for i in range(2):
        ref = TF.gaussian_blur(f[i:i + 1], [13, 13], [sigma[i].item()] * 2)
        assert torch.allclose(blur[i], ref[0], atol=1e-3)
    # ColorJitter(0.3, 0.3, 0.3): torchvision's brightness/contrast/saturation, in the sampled order
    factors, order = torch.tensor([[1.2, 0.8, 1.25], [0.75, 1.3, 0.7]]), torch.tensor([[2, 0, 1], [1, 2, 0]])
    out = A.color_jitter(f.clone(), factors, order)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation]
    for i in range(2):
        ref = f[i] / 255
        for k in order[i].tolist():
            ref = ops[k](ref, factors[i, k].item())
        assert torch.allclose(out[i] / 255, ref, atol=2e-4)


def test_same_batches_whatever_the_worker_count(imagenet_dir):
    ds = D.ImageFolderDataset(D.FolderIndex(imagenet_dir / 'train'))
    sampler = D.GlobalOrderSampler(len(ds), seed=2, global_batch=8)
    runs = []
    for workers in (0, 2):
        loader = DataLoader(D.TransformedDataset(ds, D.build_train_transform(TRAIN, 24)), batch_size=4,
                            sampler=sampler, num_workers=workers)
        runs.append(list(loader))
    for a, b in zip(*runs):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
        assert all(torch.equal(a[4][k], b[4][k]) for k in a[4])


def test_draft_decode_maps_the_crop_exactly(tmp_path):
    path = smooth_jpeg(tmp_path / 'big.jpg', 1600, 1200)
    box = (203, 117, 1203, 1037)  # 1000 x 920 -> 224: the decoder may shrink by 4
    img = Image.open(path)
    scale = D.draft_scale(img, 920 / 224)
    assert scale == 4 and img.size == (400, 300)
    reduced = D.snap_box(box, scale)
    drafted = T._resize(T._tensor(D.to_rgb(img).crop(reduced)), 224, 224)
    full = Image.open(path).convert('RGB').crop(tuple(v * scale for v in reduced))  # the same box, full size
    reference = T._resize(T._tensor(full), 224, 224)
    diff = (drafted.float() - reference.float()).abs()
    assert diff.mean() < 1.0 and diff.max() < 12, (diff.mean(), diff.max())
    # a box off by one reduced pixel is visibly further away: the test can tell a wrong mapping
    shifted = Image.open(path).convert('RGB').crop(tuple((v + 1) * scale for v in reduced))
    assert (drafted.float() - T._resize(T._tensor(shifted), 224, 224).float()).abs().mean() > 2 * diff.mean()


@pytest.mark.parametrize('kind', ['rrc', 'src', 'eval'])
def test_transforms_with_and_without_draft_agree(tmp_path, monkeypatch, kind):
    # The draft path rounds the crop box to the 1/s grid (< s/2 full-size pixels per edge): on content this smooth
    # that moves the result by far less than a grey level on average.
    path = smooth_jpeg(tmp_path / 'big.jpg', 1800, 1400, seed=3, cell=300)
    if kind == 'eval':
        tf = D.build_eval_transform(224, 1.0)
    else:
        tf = D.build_train_transform(dict(TRAIN, crop=kind, rrc_scale=(0.5, 1.0)), 224)
    scales, draft_scale = [], D.draft_scale
    monkeypatch.setattr(T, 'draft_scale', lambda *a: scales.append(draft_scale(*a)) or scales[-1])
    drafted, params = tf(Image.open(path), 7)
    assert scales[0] >= 2  # this crop was decoded at reduced scale
    monkeypatch.setattr(T, 'DRAFT_SCALES', ())
    full, params_full = tf(Image.open(path), 7)
    assert all(torch.equal(params[k], params_full[k]) for k in params)
    diff = (drafted.float() - full.float()).abs()
    assert diff.mean() < 1.0, diff.mean()


def test_unreadable_image_eval_placeholder_train_substitute(imagenet_dir, tmp_path):
    import shutil
    root = tmp_path / 'data'
    shutil.copytree(imagenet_dir / 'val', root)
    bad = sorted(root.rglob('*.JPEG'))[0]
    bad.write_bytes(b'not a jpeg')
    ds = D.ImageFolderDataset(D.FolderIndex(root))
    i = [str(ds.path(j)) for j in range(len(ds))].index(str(bad))
    val = D.TransformedDataset(ds, D.build_eval_transform(16, 1.0), substitute_bad=False)
    with pytest.warns(UserWarning, match='unreadable'):
        image, label, index, path, params = val[i]
    assert path == str(bad) and index == i and params == {}
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and not image.any()
    train = D.TransformedDataset(ds, D.build_train_transform(TRAIN, 16))
    with pytest.warns(UserWarning, match='unreadable'):
        image, label, index, path, _ = train[(i, 5)]
    assert path == str(bad) and image.any()  # the next image stands in


def test_dali_backend():
    ok, why = D.dali_available()
    if not ok:
        pytest.skip(f'NVIDIA DALI backend not tested: {why}')
    from pretrain import dali_loader  # pragma: no cover (needs nvidia-dali and a GPU)
    dali_loader.self_test()


def test_dali_backend_refused_when_unavailable(monkeypatch):
    monkeypatch.setattr(L, 'dali_available', lambda: (False, 'nvidia.dali is not installed'))
    with pytest.raises(D.DataError, match="data.backend='dali'.*nvidia.dali is not installed"):
        D.check_backend({'backend': 'dali'})
    D.check_backend({'backend': 'pil'})
