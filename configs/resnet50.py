# resnet50: trained from scratch on ImageNet-1k at 224 with cosub, RSB A1 (the convnets' recipe, cosub section 5.1).
# Table 2: tau 0.10, baseline 80.2, cosub 80.3. Baseline: --no-cosub.
_base_ = ['./_base_/rsb_a1.py']
model = dict(name='resnet50', drop_path_rate=0.1)   # tau: see above
