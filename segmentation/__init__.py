"""MMSegmentation integration: compatibility layer, layer-decay optimizer constructor, demo data, complexity.

`import segmentation` installs the compatibility layer (segmentation/compat.py) first, so listing it in a
config's `custom_imports` is enough for mmseg 1.2.2 to run on mmcv-lite and torch >= 2.6. It must not import
mmseg's models (that is what the compatibility layer has to precede). It also makes our errors (a missing or
refused checkpoint) end `mim train` / `mim test` in one line instead of a traceback (segmentation/errors.py).
"""
from . import compat

COMPAT_STATUS = compat.install()
from . import errors  # noqa: E402

COMPAT_STATUS['errors'] = errors.install()  # our errors end a mim run in one line (segmentation/errors.py)

from .registry import OPTIM_WRAPPER_CONSTRUCTORS  # noqa: E402
from .optim import LayerDecayOptimWrapperConstructor  # noqa: E402

__all__ = ['COMPAT_STATUS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'LayerDecayOptimWrapperConstructor']
