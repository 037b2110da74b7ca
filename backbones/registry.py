"""MMEngine registry node of this package, so that MMEngine configs can say `type='backbones.CosubViT'`.

mmengine resolves a scoped type name `<scope>.<Class>` by importing `<scope>.registry` and then the modules in
`locations`, so no `custom_imports` is needed for the backbone itself. This module imports mmengine only; it is
imported lazily (by mmengine or by `backbones.mmseg_backbone`), never by `import backbones`.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='backbones', locations=['backbones.mmseg_backbone'])
