# cait_l24: trained from scratch on ImageNet-1k at 224 with cosub, the DeiT III / cosub ImageNet-1k recipe (cosub section 5.1: transformers).
# Table 2: CaiT-L24 tau 0.45, baseline 83.8, cosub 84.4. timm has no CaiT-L24: CaiT-S24 widened to ViT-L width (1024, 16 heads), 330M parameters. Baseline: --no-cosub.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='cait_s24_224', embed_dim=1024, num_heads=16, drop_path_rate=0.45)   # tau: see above
