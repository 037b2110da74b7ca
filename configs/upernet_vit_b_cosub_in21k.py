# ViT-B cosub pretrained on ImageNet-21k (Table 13, bottom rows): same recipe, another checkpoint.
_base_ = ['./upernet_vit_b_cosub.py']
model = dict(backbone=dict(init_cfg=dict(checkpoint='checkpoints/cosub_vit_b_in21k.pth')))
