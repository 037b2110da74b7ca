"""Optional NVIDIA DALI training loader (`data.backend='dali'`): JPEG decoding, crop, resize and flip on the GPU.

For users who `pip install nvidia-dali-cuda120` (or -cuda110/-cuda130, matching their CUDA). It keeps what the PIL
loader guarantees: the same global sample order (data.GlobalOrderSampler), the same per-sample draws from
`sample_seed` (crop box, flip and the device parameters are drawn here exactly as TrainTransform draws them,
on the full-size image whose size comes from the JPEG header), and the same batch format, so
pretrain/augment.py then applies 3-Augment, colour jitter and normalisation to its uint8 output. Only the
decoder and the resize kernel differ (nvJPEG and DALI's cubic resize instead of libjpeg-turbo and torch's).
Training only; evaluation keeps the PIL loader. An unreadable file (no image header) is replaced by the next one
and reported as with the PIL loader; a file whose header reads but whose data is corrupt stops DALI.

What was run: nothing. DALI is installed neither on the CPU machine this was written on nor on our GPU machine;
tests/test_data_pipeline.py calls `self_test()` when DALI and a GPU are present and skips with the reason
otherwise. Treat this backend as untested until that test has passed on your machine.
"""
from __future__ import annotations

import random
import tempfile
import warnings
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from PIL import Image

from . import data as data_lib


class DaliTrainLoader:
    """Iterates (uint8 images on the GPU, labels, index, bad_paths, params) batches like the DataLoader does."""

    def __init__(self, dataset, transform: 'data_lib.TrainTransform', sampler, batch_size: int, device: torch.device,
                 threads: int = 4, max_retries: int = 10):
        if transform.crop != 'rrc':
            raise data_lib.DataError("data.backend='dali' supports train_transform.crop='rrc' only; use "
                                     "data.backend='pil' for Simple Random Crop")
        if not (hasattr(dataset, 'open') and hasattr(dataset, 'path')):
            raise data_lib.DataError(f"data.backend='dali' reads image files; {type(dataset).__name__} holds none "
                                     "(use data.backend='pil')")
        from nvidia.dali import fn, pipeline_def, types
        self.dataset, self.transform, self.sampler = dataset, transform, sampler
        self.batch_size, self.device, self.max_retries = batch_size, device, max_retries
        self._inputs: List[Tuple] = []
        size = transform.input_size

        @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=device.index or 0,
                      exec_async=False, exec_pipelined=False)
        def pipe():
            jpegs, anchor, shape, flip = fn.external_source(source=lambda: self._inputs, num_outputs=4, batch=True)
            images = fn.decoders.image_slice(jpegs, anchor, shape, device='mixed', output_type=types.RGB,
                                             axis_names='WH', normalized_anchor=False, normalized_shape=False)
            images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_CUBIC, antialias=True)
            images = fn.flip(images, horizontal=flip)
            return fn.transpose(images, perm=[2, 0, 1])

        self.pipe = pipe()
        self.pipe.build()

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def _sample(self, index: int, seed: int):
        """The file bytes, crop, flip and device parameters of one sample, drawn as TrainTransform draws them."""
        bad = ''
        for attempt in range(self.max_retries):
            i = (index + attempt) % len(self.dataset)
            path = self.dataset.path(i)
            try:
                img, target = self.dataset.open(i)
                with img:  # the header only: the size the crop is drawn on
                    width, height = img.size
                data = np.fromfile(path, dtype=np.uint8)
                break
            except (OSError, ValueError, SyntaxError) as e:
                bad = bad or str(path)
                warnings.warn(f'skipping unreadable image {path}: {e}')
        else:
            raise data_lib.DataError(f'{bad}: {self.max_retries} consecutive unreadable images from here')
        rng = random.Random(seed)
        left, top, w, h = data_lib.rrc_box(rng, width, height, self.transform.rrc_scale)
        flip = bool(self.transform.hflip and rng.random() < self.transform.hflip)
        return data, (left, top), (w, h), flip, target, bad, self.transform.device_params(rng)

    def __iter__(self):
        from nvidia.dali.plugin.pytorch import feed_ndarray
        keys = list(self.sampler)
        for start in range(0, len(keys) - self.batch_size + 1, self.batch_size):
            chunk = keys[start:start + self.batch_size]
            samples = [self._sample(index, seed) for index, seed in chunk]
            self._inputs = [[s[0] for s in samples],
                            [np.asarray(s[1], dtype=np.float32) for s in samples],
                            [np.asarray(s[2], dtype=np.float32) for s in samples],
                            [np.asarray(s[3], dtype=np.int32) for s in samples]]
            (out,) = self.pipe.run()
            out = out.as_tensor()
            images = torch.empty(out.shape(), dtype=torch.uint8, device=self.device)
            feed_ndarray(out, images, cuda_stream=torch.cuda.current_stream(self.device))
            labels = torch.tensor([s[4] for s in samples])
            index = torch.tensor([k[0] for k in chunk])
            params = torch.utils.data.default_collate([s[6] for s in samples])
            yield images, labels, index, [s[5] for s in samples], params


def self_test() -> None:
    """DALI vs the PIL loader on generated JPEGs: same parameters, images within decoder/resize differences."""
    from torch.utils.data import default_collate
    t = dict(crop='rrc', rrc_scale=(0.08, 1.0), hflip=0.5, three_augment=True, color_jitter=0.3)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for i in range(8):
            small = rng.uniform(0, 255, (8, 10, 3)).astype(np.uint8)
            path = Path(tmp) / 'train' / 'n0' / f'{i}.JPEG'
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(path, quality=90)
        dataset = data_lib.ImageFolderDataset(data_lib.FolderIndex(Path(tmp) / 'train', cache_dir=Path(tmp)))
        transform = data_lib.build_train_transform(t, 64)
        sampler = data_lib.GlobalOrderSampler(len(dataset), seed=1, global_batch=8)
        dali = next(iter(DaliTrainLoader(dataset, transform, sampler, 8, torch.device('cuda'))))
        ref = default_collate([data_lib.TransformedDataset(dataset, transform)[key] for key in sampler])
    assert dali[0].dtype == torch.uint8 and dali[0].shape == ref[0].shape
    assert torch.equal(dali[1], ref[1]) and torch.equal(dali[2], ref[2])
    assert all(torch.equal(dali[4][k], ref[4][k]) for k in ref[4])
    diff = (dali[0].cpu().float() - ref[0].float()).abs().mean().item()
    assert diff < 4.0, f'DALI and PIL crops differ by {diff:.2f} grey levels on average'
