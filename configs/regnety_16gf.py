# regnety_16gf: trained from scratch on ImageNet-1k at 224 with cosub, RSB A1 (the convnets' recipe, cosub section 5.1).
# Table 2: RegNet-16GF tau 0.30, baseline 82.9, cosub 83.8 (Table 11: RegNetY-16GF 83.8 / v2 72.8). Baseline: --no-cosub.
_base_ = ['./_base_/rsb_a1.py']
model = dict(name='regnety_160', drop_path_rate=0.3)   # tau: see above
