"""Dependencies live here (not in pyproject.toml) for one reason: mmcv.

mmsegmentation needs `mmcv`. By default we install the pure-Python `mmcv-lite` (nothing compiles;
segmentation/compat.py provides the few ops UperNet needs). But `mmcv-lite` and a full `mmcv` install the
same `mmcv/` folder, so installing the lite one over a full one would overwrite its files. When a full mmcv
distribution is already installed in the target environment, we depend on it instead and leave it alone.
"""
import sysconfig
from pathlib import Path

from setuptools import find_packages, setup


def full_mmcv_installed() -> bool:
    # Build isolation hides the target's packages from `import`, but not from the file system.
    for key in ('purelib', 'platlib'):
        site = Path(sysconfig.get_paths()[key])
        if any(site.glob('mmcv-*.dist-info')) or any(site.glob('mmcv-*.egg-info')):
            return True
    return False


MMCV = 'mmcv>=2.0.0rc4,<2.2.0' if full_mmcv_installed() else 'mmcv-lite>=2.0.0rc4,<2.2.0'

# configs/ stays at the top of the repository (`mim train mmseg configs/upernet_vit_l_cosub.py` from a checkout) and
# ships inside the wheel as the package `cosub_configs` (data only: config files, their _base_/ and transfer/
# folders side by side, so that `_base_ = ['./_base_/...']` resolves); pretrain.config.find_config finds it.
CONFIG_PACKAGES = ['cosub_configs'] + sorted(
    'cosub_configs.' + '.'.join(d.relative_to('configs').parts)
    for d in Path('configs').rglob('*') if d.is_dir() and any(d.glob('*.py')))

setup(
    packages=find_packages(include=['backbones*', 'pretrain*', 'segmentation*', 'transfer*']) + CONFIG_PACKAGES,
    package_dir={'cosub_configs': 'configs'},
    package_data={package: ['*.py'] for package in CONFIG_PACKAGES},
    install_requires=[
        # A range, not a pin: a GPU machine keeps the torch it already has (e.g. 2.11); CPU-only machines
        # get the CUDA 2.14 build, which runs fine without a GPU (REFERENCE section 1).
        'torch>=2.4',
        'torchvision>=0.19',
        # Floors checked by running tests/test_hub.py (2026-11-30): timm 1.0.31 is the first with what the Hub export
        # uses (save_config_for_hf(data_config=...), recorded model args) and the block code timm_models.py
        # adapts; huggingface_hub 0.25.0 and safetensors 0.4.0 pass.
        'timm>=1.0.31',
        'huggingface_hub>=0.25',
        'safetensors>=0.4',
        'datasets>=3',  # data.type=hf: ImageNet as a Hugging Face dataset (Parquet shards or save_to_disk), offline
        'numpy',
        'scipy',  # .mat readers (Flowers-102, Stanford Cars)
        'pillow',
        'tqdm',
        'matplotlib',
        'tensorboard',
        'scikit-learn',  # the demo's digits dataset ships inside it
        'submitit>=1.5',  # python -m pretrain.submit: SLURM launch, checkpoint and requeue
        # mmsegmentation does not declare mmcv/mmengine; we do.
        'mmengine>=0.10.4,<0.11',
        MMCV,
        'mmsegmentation==1.2.2',
        'openmim>=0.3.9',
        'ftfy',  # imported by mmseg's model package
        'regex',
        'setuptools<82',  # mim and mmengine's `mmseg::` config bases need pkg_resources
    ],
)
