# ViT-S cosub (ImageNet-1k) + UperNet on ADE20k (Table 13: 41.7M params): UperNet channels 384 (DeiT III),
# LayerDecay 0.7 and drop-path 0.05 (cosub supplement Table A.1).
_base_ = ['./_base_/upernet_vit.py']
model = dict(
    backbone=dict(arch='vit_s', drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='checkpoints/cosub_vit_s_in1k.pth')),
    neck=dict(embed_dim=384),
    decode_head=dict(in_channels=[384, 384, 384, 384], channels=384),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.7))
