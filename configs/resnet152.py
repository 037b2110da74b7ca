# resnet152: trained from scratch on ImageNet-1k at 224 with cosub, RSB A1 (the convnets' recipe, cosub section 5.1).
# Table 2: tau 0.30, baseline 82.4, cosub 83.1 (Table 11: 83.1 / v2 72.1). Baseline: --no-cosub.
_base_ = ['./_base_/rsb_a1.py']
model = dict(name='resnet152', drop_path_rate=0.3)   # tau: see above
