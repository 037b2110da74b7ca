# ViT-L cosub (ImageNet-1k) + UperNet on ADE20k (Table 13: 353.6M params, 52.5 / 53.1 mIoU): features after
# blocks 7/11/15/23, drop-path 0.2 (BEiT-L's UperNet rate; XCiT has no model of this size). Other values: the
# base (XCiT's recipe).
_base_ = ['./_base_/upernet_vit.py']
model = dict(
    backbone=dict(arch='vit_l', drop_path_rate=0.2,   # BEiT-L UperNet config
                  init_cfg=dict(checkpoint='checkpoints/cosub_vit_l_in1k.pth')),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024]),
    auxiliary_head=dict(in_channels=1024))
