# ViT-H pretrained on ImageNet-21k with cosub for 90 epochs (Tables 10 and B.1 default schedule).
_base_ = ['./_base_/deit3_in21k.py']
model = dict(name='vit_h', drop_path_rate=0.5)   # tau: supplement Table A.1 (ImageNet-21k pre-train)
