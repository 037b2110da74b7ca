# swin_b: trained from scratch on ImageNet-1k at 224 with cosub, the DeiT III / cosub ImageNet-1k recipe (cosub section 5.1: transformers).
# Table 2: Swin-B tau 0.20, baseline 82.9, cosub 83.3. Baseline: --no-cosub.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='swin_base_patch4_window7_224', drop_path_rate=0.2)   # tau: see above
