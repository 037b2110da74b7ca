# DeiT III recipe for ImageNet-21k pretraining (cosub supplement A.1): cross-entropy with label smoothing 0.1,
# Simple Random Crop, cutmix only, no repeated augmentation, 90 epochs (the long schedule is 270).
_base_ = ['./deit3_in1k.py']
data = dict(
    path='data/imagenet21k',
    val_split=None,              # ImageNet-21k has no official validation split; set one to evaluate
    repeated_aug=1,
    train_transform=dict(crop='src'),
)
mixup = dict(mixup_alpha=0.0, cutmix_alpha=1.0)
loss = dict(type='ce', label_smoothing=0.1)
epochs = 90
