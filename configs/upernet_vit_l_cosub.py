# ViT-L cosub (ImageNet-1k) + UperNet on ADE20k (Table 13: 353.6M params): features after blocks 7/11/15/23,
# LayerDecay 0.8 and drop-path 0.3 (cosub supplement Table A.1).
_base_ = ['./_base_/upernet_vit.py']
model = dict(
    backbone=dict(arch='vit_l', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint='checkpoints/cosub_vit_l_in1k.pth')),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024]),
    auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8))
