# ViT-B cosub (ImageNet-1k) + UperNet on ADE20k; all settings in the base (Table 13: 127.7M params).
_base_ = ['./_base_/upernet_vit.py']
model = dict(backbone=dict(init_cfg=dict(checkpoint='checkpoints/cosub_vit_b_in1k.pth')))
