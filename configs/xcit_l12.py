# xcit_l12: trained from scratch on ImageNet-1k at 224 with cosub, the DeiT III / cosub ImageNet-1k recipe (cosub section 5.1: transformers).
# Table 2: XCiT-L12 tau 0.20, baseline 82.6, cosub 83.0. timm has no XCiT-L12: XCiT-S12 at XCiT-L width (768, 16 heads). Baseline: --no-cosub.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='xcit_small_12_p16_224', embed_dim=768, num_heads=16, drop_path_rate=0.2)   # tau: see above
