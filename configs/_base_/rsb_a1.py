# The convnets' recipe: "the training procedure from Wightman et al. [55] for the convnets" (cosub section 5.1),
# i.e. ResNet strikes back (RSB) procedure A1 (its Table 1); Table 11's ResNet baselines (80.4 / 81.5 / 82.0)
# are RSB A1 numbers. A2 (300 epochs) as documented options:
#   --cfg-options epochs=300 optimizer.weight_decay=0.02 mixup.mixup_alpha=0.1
# Deviations, stated: RSB's RandAugment (rand-m7-mstd0.5-inc1) is not implemented here, so the DeiT III
# 3-Augment + RRC pipeline is kept; RSB binarises BCE targets above 0.2, ours above 0 (DeiT III); the drop-path
# rate is cosub's tau per architecture (Table 2), not RSB's 0.05.
_base_ = ['./deit3_in1k.py']
data = dict(eval_crop_ratio=0.95)   # RSB A1: test crop ratio 0.95 at 224
mixup = dict(mixup_alpha=0.2, cutmix_alpha=1.0)   # RSB A1: mixup 0.2, cutmix 1.0
loss = dict(type='bce', label_smoothing=0.0)      # RSB: BCE
optimizer = dict(
    base_lr=5e-3,            # RSB A1: LAMB, lr 5e-3 at batch 2048
    weight_decay=0.01,       # RSB A1: 0.01
)
epochs = 600                 # RSB A1: 600 epochs
