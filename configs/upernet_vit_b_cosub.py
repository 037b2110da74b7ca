# ViT-B cosub (ImageNet-1k) + UperNet on ADE20k (Table 13: 127.7M params, 49.3 / 49.9 mIoU); all settings in the
# base (XCiT's recipe, drop-path 0.15).
_base_ = ['./_base_/upernet_vit.py']
model = dict(backbone=dict(init_cfg=dict(checkpoint='checkpoints/cosub_vit_b_in1k.pth')))
