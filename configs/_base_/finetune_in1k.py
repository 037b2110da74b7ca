# Fine-tuning an ImageNet-21k model on ImageNet-1k at 224 (cosub supplement A.1, Tables 10 and 12).
# Give the 21k checkpoint with --finetune; pos_embed is interpolated for other resolutions.
# Sources, in order: the cosub supplement A.1 where it speaks (LR rule, weight decay, LayerDecay, 50 epochs, CE),
# else the official DeiT III ImageNet-1k fine-tuning commands (facebookresearch/deit README_revenge.md,
# "finetuning on ImageNet-1k"): Simple Random Crop + 3-Augment, colour jitter 0.3, mixup 0 + cutmix 1.0,
# --no-repeated-aug, --smoothing 0.1, LAMB, 5 warm-up epochs from 1e-6, drop-path per size (in vit_*_ft_in1k.py).
_base_ = ['./deit3_in1k.py']
data = dict(
    repeated_aug=1,                    # DeiT III fine-tuning command: --no-repeated-aug
    train_transform=dict(crop='src'),  # --src (Simple Random Crop); 3-Augment and colour jitter 0.3 inherited
)
mixup = dict(mixup_alpha=0.0, cutmix_alpha=1.0)   # DeiT III fine-tuning command: --mixup 0 --cutmix 1.0
loss = dict(type='ce', label_smoothing=0.1)       # supplement A.1: CE when fine-tuning on 1k; --smoothing 0.1
optimizer = dict(
    base_lr=1e-4,             # supplement eq. A.2: 1e-4 * sqrt(BS / 2048) * C_LD (DeiT III's command has 3e-4)
    weight_decay=0.02,        # supplement A.1: 0.02 for pre-training, training and fine-tuning alike
    layer_decay=0.75,         # supplement Table A.1 (ViT-B/M); per size in vit_*_ft_in1k.py
    layer_decay_lr_mult=2.0,  # supplement A.1: C_LD = 2 with LayerDecay
)
epochs = 50                   # supplement A.1 / Table 12: 50 epochs of fine-tuning
dry_run = dict(gpus=32)       # DeiT III fine-tuning command for ViT-B/L/H: --node 4 --gpu 8
