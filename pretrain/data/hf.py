"""data.type='hf': ImageNet-1k / 21k held as a Hugging Face dataset, read offline with the `datasets` library.

--data-path is a local folder in one of the two layouts `datasets` writes:
- the Hub's: Parquet shards data/<split>-*.parquet (as in a downloaded snapshot, e.g. the folder
  ~/.cache/huggingface/hub/datasets--ILSVRC--imagenet-1k/snapshots/<revision>); `datasets` converts them to Arrow
  files in its cache (HF_DATASETS_CACHE) the first time, later runs map those files;
- save_to_disk's: <split>/state.json beside the Arrow files.
Columns `image` (bytes + path) and `label`, a ClassLabel whose names are the classes. The Hub calls ImageNet's val
split 'validation': data.val_split='val' (the ImageNet configs' value) reads it.

The dataset is map-style over the Arrow rows, so the sampler's global order, the per-sample augmentation seeds and
exact resume hold as for folders. The image bytes are read undecoded and decoded in the workers by images.py,
lazily: a JPEG may decode at reduced scale (draft) as files do.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .errors import DataError, first_line
from .images import open_image, to_rgb
from .index import build_index
from .readers import Splits, attach_imagenet_extras, data_setting, register_dataset

HUB_SPLIT_NAMES = {'val': 'validation'}  # our split name -> the Hub's


def _split_source(root: Path, split: str) -> Union[List[Path], Path]:
    """The Parquet shards of `split`, else its save_to_disk folder."""
    for name in (split, HUB_SPLIT_NAMES.get(split, split)):
        for folder in (root / 'data', root):
            shards = sorted(folder.glob(f'{name}-*.parquet'))
            if shards:
                return shards
        if (root / name / 'state.json').is_file():
            return root / name
    raise DataError(f'{root}: no Parquet shards data/{split}-*.parquet and no save_to_disk folder {split}/ '
                    f'(state.json); expected a Hugging Face dataset with a {split!r} split')


def _load(root: Path, split: str):
    """The split as a `datasets.Dataset` with the image bytes undecoded; its source (for messages)."""
    os.environ.setdefault('HF_DATASETS_OFFLINE', '1')  # read before datasets is first imported: nothing downloads
    import datasets
    source = _split_source(root, split)
    where = source[0].parent / f'{source[0].name.split("-")[0]}-*.parquet' if isinstance(source, list) else source
    try:
        if isinstance(source, list):
            table = datasets.load_dataset('parquet', data_files=[str(s) for s in source], split='train')
        else:
            table = datasets.load_from_disk(str(source))
    except Exception as e:  # datasets raises many types for damaged or foreign files
        raise DataError(f'{where}: not readable as a Hugging Face dataset ({first_line(e)})') from None
    if not isinstance(table, datasets.Dataset):
        raise DataError(f'{where}: holds a {type(table).__name__}; expected one split (a Dataset)')
    features = table.features
    for column, kind in (('image', datasets.Image), ('label', datasets.ClassLabel)):
        if not isinstance(features.get(column), kind):
            found = 'missing' if column not in features else f'a {type(features[column]).__name__}'
            raise DataError(f'{where}: column {column!r} is {found}; expected {column!r} as a {kind.__name__} '
                            f'(columns: {", ".join(features)})')
    return table.select_columns(['image', 'label']).cast_column('image', datasets.Image(decode=False)), where


class HFImageDataset(Dataset):
    """The rows of one split: (PIL image, label); `open(i)` hands the image over undecoded (JPEG draft)."""

    def __init__(self, table, source: Path, classes: List[str]):
        self.table, self.source = table, source
        labels = np.asarray(table.with_format('numpy')['label'])
        self.index = build_index(source, labels, classes, image_key='row', label_key='label')
        self.classes, self.targets = self.index.classes, self.index.targets
        self.real_labels: Optional[List[List[int]]] = None  # ImageNet-ReaL labels per sample, when given

    def __len__(self) -> int:
        return len(self.targets)

    def sample_name(self, i: int) -> str:
        return f'{self.source} row {i}'

    def file_name(self, i: int) -> str:
        """The name of the file the image came from, as the dataset stores it (ImageNet-ReaL numbers by it)."""
        return Path(self.table[i]['image']['path'] or self.sample_name(i)).name

    def open(self, i: int) -> Tuple[Image.Image, int]:
        data = self.table[i]['image']['bytes']
        return open_image(io.BytesIO(data or b''), self.sample_name(i)), int(self.targets[i])

    def __getitem__(self, i: int) -> Tuple[Image.Image, int]:
        img, target = self.open(i)
        return to_rgb(img, self.sample_name(i)), target


@register_dataset('hf')
def hf(cfg: dict) -> Splits:
    root = Path(data_setting(cfg, 'path'))
    if not root.is_dir():
        raise DataError(f'--data-path {root}: no such folder; expected a Hugging Face dataset folder '
                        '(Parquet shards data/<split>-*.parquet, or save_to_disk output)')
    table, source = _load(root, data_setting(cfg, 'train_split'))
    classes = list(table.features['label'].names)
    train, val = HFImageDataset(table, source, classes), None
    if data_setting(cfg, 'val_split'):
        table, source = _load(root, cfg['val_split'])
        names = list(table.features['label'].names)
        if names != classes:
            first = next((a, b) for a, b in zip(names + [None] * len(classes), classes + [None] * len(names))
                         if a != b)
            raise DataError(f'{source}: ClassLabel names differ from the training split\'s ({first[0]!r} where '
                            f'training has {first[1]!r}); expected the same classes in the same order')
        val = HFImageDataset(table, source, classes)
    return attach_imagenet_extras(cfg, train, val)
