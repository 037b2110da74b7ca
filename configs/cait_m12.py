# cait_m12: trained from scratch on ImageNet-1k at 224 with cosub, the DeiT III / cosub ImageNet-1k recipe (cosub section 5.1: transformers).
# Table 6: CaiT-M12 tau 0.20, 400 epochs 83.2 -> 83.7, 800 epochs 82.9 -> 83.6. timm has no CaiT-M12: CaiT-M36 with 12 blocks. Baseline: --no-cosub.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='cait_m36_384', depth=12, drop_path_rate=0.2)   # tau: see above
epochs = 400                      # Table 6's first row; 800 for its second
