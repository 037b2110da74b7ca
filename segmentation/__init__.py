"""MMSegmentation integration: compatibility layer, layer-decay optimizer constructor, demo data, complexity.

`import segmentation` installs the compatibility layer (segmentation/compat.py) first, so listing it in a
config's `custom_imports` is enough for mmseg 1.2.2 to run on mmcv-lite and torch >= 2.6. It must not import
mmseg's models (that is what the compatibility layer has to precede).
"""
from . import compat

COMPAT_STATUS = compat.install()

from .registry import OPTIM_WRAPPER_CONSTRUCTORS  # noqa: E402
from .optim import LayerDecayOptimWrapperConstructor  # noqa: E402

__all__ = ['COMPAT_STATUS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'LayerDecayOptimWrapperConstructor']
