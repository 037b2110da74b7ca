# ViT-S trained from scratch on ImageNet-1k with cosub (DeiT III recipe, tau from Table A.1).
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='vit_s', drop_path_rate=0.05)
