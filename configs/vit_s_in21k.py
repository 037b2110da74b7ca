# ViT-S pretrained on ImageNet-21k with cosub for 90 epochs (Tables 10 and B.1 default schedule).
_base_ = ['./_base_/deit3_in21k.py']
model = dict(name='vit_s', drop_path_rate=0.05)   # tau: supplement Table A.1 (ImageNet-21k pre-train)
dry_run = dict(gpus=16)          # DeiT III 21k command for ViT-S: --node 2 --gpu 8
