"""Datasets, transforms and the sampler of the training engine (pretraining and transfer).

- Datasets are registered by name (`@register_dataset('imagenet')`) and return PIL images with integer labels;
  transfer/data.py registers the transfer datasets the same way.
- ImageNet folders are indexed once and the index is cached (an ImageNet-21k folder holds 14 million files).
  The index lives in numpy arrays, not Python lists, so DataLoader workers share it without copying.
- Augmentation is seeded per sample from (seed, epoch, position), and the sampler fixes the global order of
  an epoch: a run gives the same batches whatever the number of GPUs and workers, and resuming mid-epoch
  continues exactly.
- Unreadable images are skipped and counted (the next image stands in); the engine stops when their share
  exceeds `data.max_bad_fraction`, naming the first bad file.

One module per concern, their public names re-exported here (`from pretrain.data import FolderIndex`):

    errors.py        DataError, ImageReadError
    images.py        one image file -> RGB (lazy open for JPEG draft decoding, decompression bombs refused)
    index.py         build_index: THE check of every reader's sample list (ids, one label per image, classes,
                     paths under the root) -> SampleIndex; PackedPaths
    folder_index.py  FolderIndex: root/<class>/<image> listed once, the listing cached
    readers.py       the dataset registry (register_dataset, build_splits, Splits) and the ImageNet and digits readers
    hf.py            data.type='hf': ImageNet as a Hugging Face dataset (Hub Parquet shards or save_to_disk)
    transforms.py    the worker half of the augmentation (TrainTransform, EvalTransform)
    loader.py        data.backend check, TransformedDataset (per-sample seeds, unreadable images), the sampler

A test that replaces a name replaces it in the module that uses it (e.g. `pretrain.data.transforms.draft_scale`):
the names here are the same objects, but rebinding one here changes nothing there.
"""
from .errors import DataError, ImageReadError
from .folder_index import IMAGE_EXTENSIONS, FolderIndex
from .images import load_rgb, open_image, to_rgb
from .index import PackedPaths, SampleIndex, build_index, integer_labels
from .loader import (BACKENDS, GlobalOrderSampler, NormalisedBatches, TransformedDataset, check_backend,
                     dali_available, sample_seed)
from .readers import (DATASETS, DIGITS_VAL_FRACTION, ArrayDataset, ImageFileDataset, ImageFolderDataset,
                      ImageNetV2Dataset, RealLabels, Splits, build_splits, data_setting, digits, imagenet,
                      register_dataset)
from . import hf  # noqa: F401,E402  (registers data.type='hf')
from .transforms import (DRAFT_SCALES, RRC_RATIO, SRC_PADDING, EvalTransform, TrainTransform, build_eval_transform,
                         build_train_transform, draft_scale, rrc_box, snap_box)

__all__ = [
    'DataError', 'ImageReadError',
    'IMAGE_EXTENSIONS', 'FolderIndex',
    'load_rgb', 'open_image', 'to_rgb',
    'PackedPaths', 'SampleIndex', 'build_index', 'integer_labels',
    'BACKENDS', 'GlobalOrderSampler', 'NormalisedBatches', 'TransformedDataset', 'check_backend', 'dali_available',
    'sample_seed',
    'DATASETS', 'DIGITS_VAL_FRACTION', 'ArrayDataset', 'ImageFileDataset', 'ImageFolderDataset', 'ImageNetV2Dataset',
    'RealLabels', 'Splits', 'build_splits', 'data_setting', 'digits', 'imagenet', 'register_dataset',
    'DRAFT_SCALES', 'RRC_RATIO', 'SRC_PADDING', 'EvalTransform', 'TrainTransform', 'build_eval_transform',
    'build_train_transform', 'draft_scale', 'rrc_box', 'snap_box',
]
