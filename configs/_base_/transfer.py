# Transfer learning: fine-tune an ImageNet-1k model at 224x224 on one of the six datasets of cosub Table 14
# (supplement A.2). Every configs/transfer/<dataset>.py inherits this file and states its own changes.
#
# Sources. The DeiT III thesis (section 6.3.5.1, Table 6.11) fixes resolution 224 and test crop ratio 1.0
# (0.875 is better on iNat, Figure 6.6) and fine-tunes only the attention layers on Flowers; it does not list
# the rest. Its transfer procedure is that of CaiT (thesis section 3.7.1.3, reused in chapter 5): "the same
# hyper-parameters as for training", learning rate divided by 10 (Cars, Flowers, iNat) or 100 (CIFAR), 1000
# epochs (CIFAR, Flowers, Cars) or 360 (iNat). The author's stated settings for these runs (facebookresearch/
# dino#81, deit#45): AdamW, global batch 768, lr 5e-4 * 768/512 / 100 = 7.5e-6 on CIFAR, weight decay 0.05,
# cosine, 5 warm-up epochs from 1e-6, label smoothing, repeated augmentation, mixup 0.8 + cutmix 1.0,
# stochastic depth. We keep those and swap DeiT's RandAugment for DeiT III's 3-Augment with colour jitter 0.3
# (the DeiT III ImageNet-1k recipe), and fine-tune with cross-entropy as DeiT III does (thesis 6.2.1).
# AdamW rather than LAMB: LAMB scales each update by the weight norm, so the freshly initialised (small)
# classifier barely moves at these learning rates.
# cosub stays on (Table 14 fine-tunes with it); --no-cosub gives the DeiT III baseline fine-tuning.
_base_ = ['./deit3_in1k.py']

model = dict(
    _delete_=True,
    name=None,               # None: the architecture stored in the --finetune checkpoint (ours); else --model
    num_classes=None,        # from the data
    drop_path_rate=None,     # None: the checkpoint's tau (supplement Table A.1), 0.1 without one
    drop_path_mode='esd',
    drop_path_schedule='uniform',
)
input_size = 224
data = dict(
    _delete_=True,
    type=None,               # set by each dataset config
    path=None,
    num_workers=10,
    repeated_aug=3,
    train_transform=dict(crop='rrc', rrc_scale=(0.08, 1.0), hflip=0.5, three_augment=True, color_jitter=0.3),
    eval_crop_ratio=1.0,     # DeiT III Table 6.11; 0.875 helps on iNaturalist (thesis Figure 6.6)
    max_bad_fraction=0.001,
)
mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch')
loss = dict(type='ce', label_smoothing=0.1)
cosub = dict(enabled=True, num_submodels=2, lam=0.5, soft=True)
optimizer = dict(
    _delete_=True,
    type='adamw',
    lr=None,                 # None: base_lr * sqrt(batch_size / base_batch_size) (supplement eq. A.1/A.2)
    base_lr=7.5e-5,          # DeiT's 5e-4 * 768 / 512 divided by 10 (Cars, Flowers, iNat)
    base_batch_size=768,
    weight_decay=0.05,
    clip_grad=1.0,           # as every DeiT III recipe
    layer_decay=None,        # e.g. 0.65-0.85 (supplement Table A.1); the LR is then x layer_decay_lr_mult
    layer_decay_lr_mult=2.0,  # C_LD of supplement eq. A.2
    only=None,               # substrings of the parameters to train; the others are frozen (see flowers.py)
)
schedule = dict(sched='cosine', warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-6)
epochs = 1000
batch_size = 768
finetune = None              # the pretrained checkpoint (--finetune)
reset_head = True            # re-initialise a checkpoint head of the right size trained on other classes
