# pit_b: trained from scratch on ImageNet-1k at 224 with cosub, the DeiT III / cosub ImageNet-1k recipe (cosub section 5.1: transformers).
# Table 2: PiT-B tau 0.25, baseline 83.8, cosub 84.1 (Table 6: 400 epochs 83.8 -> 84.1). Baseline: --no-cosub.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='pit_b_224', drop_path_rate=0.25)   # tau: see above
