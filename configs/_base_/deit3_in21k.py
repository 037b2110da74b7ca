# DeiT III recipe for ImageNet-21k pretraining (cosub supplement A.1): cross-entropy with label smoothing 0.1,
# Simple Random Crop, cutmix only, no repeated augmentation, 90 epochs (the long schedule, 270 epochs with
# tau + 0.05, is in vit_*_in21k_270ep.py).
# Loss: the cosub supplement A.1 says cross-entropy for ImageNet-21k pre-training and we follow it; the official
# DeiT III commands (README_revenge.md) agree (--smoothing 0.1, no --bce-loss). BCE with label smoothing is
# refused (pretrain/cosub.py): it would binarise every smoothed target to 1.
_base_ = ['./deit3_in1k.py']
data = dict(
    path='data/imagenet21k',
    val_split=None,              # ImageNet-21k has no official validation split; set one to evaluate
    num_train_images=14197122,   # fall 2011 release, 21,841 classes (image-net.org); the papers give no count
    repeated_aug=1,              # DeiT III 21k command: --no-repeated-aug
    train_transform=dict(crop='src'),  # DeiT III 21k command: --src (Simple Random Crop), 3-Augment, jitter 0.3
)
mixup = dict(mixup_alpha=0.0, cutmix_alpha=1.0)  # DeiT III 21k command: --mixup 0 --cutmix 1.0
loss = dict(type='ce', label_smoothing=0.1)      # supplement A.1: CE on 21k; DeiT III 21k command --smoothing 0.1
epochs = 90                      # supplement A.1 / Table B.1: 90 epochs of ImageNet-21k pre-training
dry_run = dict(gpus=32)          # DeiT III 21k commands for ViT-B/L/H: --node 4 --gpu 8
