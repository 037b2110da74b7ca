# pit_s: trained from scratch on ImageNet-1k at 224 with cosub, the DeiT III / cosub ImageNet-1k recipe (cosub section 5.1: transformers).
# Table 11: PiT-S cosub 81.3 / v2 69.7; tau not given: 0.05, the supplement B.1 rule when the literature uses 0 (PiT-S, like DeiT-S, trains at 0.1: we follow ViT-S's 0.05). Baseline: --no-cosub.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='pit_s_224', drop_path_rate=0.05)   # tau: see above
