# The DeiT III baseline on ImageNet-1k as published (Tables 1, 2, 6, 8 and 11 "DeiT-III"/"baseline" rows): the
# official commands of facebookresearch/deit README_revenge.md ("Training on ImageNet-1k"), no cosub. They
# differ from the cosub recipe (supplement A.1) in LR and weight decay; everything else is the same DeiT III
# recipe (LAMB, BCE, smoothing 0, mixup 0.8 + cutmix 1.0, repeated augmentation, 3-Augment + RRC, jitter 0.3,
# 5 warm-up epochs from 1e-6, 800 epochs, global batch 2048 = 256 x 8 GPUs or 64 x 32 GPUs).
_base_ = ['./deit3_in1k.py']
method = 'baseline'              # the supervised baseline (equivalently --no-cosub or --method baseline)
optimizer = dict(
    base_lr=3e-3,                # --lr 3e-3 --unscale-lr (the LR as given, at the batch of 2048); 4e-3 for ViT-S
    weight_decay=0.05,           # --weight-decay 0.05 (the cosub recipe uses 0.02)
)
