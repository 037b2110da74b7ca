# resnet101: trained from scratch on ImageNet-1k at 224 with cosub, RSB A1 (the convnets' recipe, cosub section 5.1).
# Table 2: tau 0.20, baseline 81.8, cosub 82.1 (Table 11: 82.1 / v2 70.8). Baseline: --no-cosub.
_base_ = ['./_base_/rsb_a1.py']
model = dict(name='resnet101', drop_path_rate=0.2)   # tau: see above
