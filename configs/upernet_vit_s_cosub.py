# ViT-S cosub (ImageNet-1k) + UperNet on ADE20k (Table 13: 41.7M params, 47.0 / 48.0 mIoU): UperNet channels 384
# (DeiT III thesis 6.3.5.2), drop-path 0.05 (XCiT-S12's UperNet rate). Other values: the base (XCiT's recipe).
_base_ = ['./_base_/upernet_vit.py']
model = dict(
    backbone=dict(arch='vit_s', drop_path_rate=0.05,   # XCiT-S12 UperNet config
                  init_cfg=dict(checkpoint='checkpoints/cosub_vit_s_in1k.pth')),
    neck=dict(embed_dim=384),
    decode_head=dict(in_channels=[384, 384, 384, 384], channels=384),   # DeiT III: 384 for ViT-S
    auxiliary_head=dict(in_channels=384))
