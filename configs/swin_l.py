# swin_l: trained from scratch on ImageNet-1k at 224 with cosub, the DeiT III / cosub ImageNet-1k recipe (cosub section 5.1: transformers).
# Table 2: Swin-L tau 0.45, baseline 80.8, cosub 84.0. Baseline: --no-cosub.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='swin_large_patch4_window7_224', drop_path_rate=0.45)   # tau: see above
