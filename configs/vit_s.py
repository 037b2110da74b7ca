# ViT-S trained from scratch on ImageNet-1k with cosub, 800 epochs at 224 (Tables 1, 6 and 11; the cosub recipe
# of supplement A.1: LR 1e-3 at batch 2048, weight decay 0.02). Baseline as published: deit3_vit_s.py.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='vit_s', drop_path_rate=0.05)   # tau: Table 1 / supplement Table A.1 (ImageNet-1k train)

