# ViT-L pretrained on ImageNet-21k with cosub (tau from Table A.1).
_base_ = ['./_base_/deit3_in21k.py']
model = dict(name='vit_l', drop_path_rate=0.3)
