# ViT-B pretrained on ImageNet-21k with cosub (tau from Table A.1).
_base_ = ['./_base_/deit3_in21k.py']
model = dict(name='vit_b', drop_path_rate=0.1)
