"""MMEngine registry nodes of the segmentation package (scope `segmentation`).

A config refers to them as `constructor='segmentation.LayerDecayOptimWrapperConstructor'`; mmengine then imports
this module (and, through `import segmentation`, the compatibility layer) on its own.
"""
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope='segmentation', locations=['segmentation.optim'])
