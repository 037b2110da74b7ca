# Transfer learning: fine-tune an ImageNet-1k model at 224x224 on one of the six datasets of cosub Table 14
# (supplement A.2). Every configs/transfer/<dataset>.py inherits this file and states its own changes.
#
# Sources. The authors' stated transfer recipe (facebookresearch/deit issue 45, for CIFAR-10 and Stanford Cars):
# "Batch size 768, lr 0.01, optimizer SGD, weight-decay 1e-4, epochs 1000. We remove random erasing and
# stochastic depth. All other elements are the same as for training on ImageNet." This base is that recipe,
# used for the small sets (CIFAR-10/100, Flowers-102, Cars); the iNaturalist configs follow the authors' iNat
# answer instead (facebookresearch/deit issue 105: AdamW, 7.5e-5, 360 epochs; see inat18.py). The DeiT III
# thesis (section 6.3.5.1, Table 6.11) adds resolution 224 and test crop ratio 1.0, and attention-only
# fine-tuning on Flowers. "The same as for training on ImageNet" is DeiT's recipe (main.py defaults: repeated
# augmentation, label smoothing 0.1, mixup 0.8 + cutmix 1.0, 5 warm-up epochs from 1e-6, min LR 1e-5); we keep
# DeiT III's 3-Augment with colour jitter 0.3 in place of DeiT's RandAugment (not implemented here).
# Stochastic depth: removed for the DeiT III baseline (issue 45: --no-cosub --cfg-options model.drop_path_rate=0);
# with cosub (Table 14 fine-tunes with it) tau must be > 0, since tau = 0 makes the two submodels identical
# (supplement A.1), so we use the supplement B.1 rule "tau = 0 disables cosub therefore we use 0.05".
_base_ = ['./deit3_in1k.py']

# The model: an ImageNet-1k checkpoint's architecture, stochastic depth as in pre-training (DeiT III uniform ESD).
model = dict(
    _delete_=True,
    name=None,               # None: the architecture stored in the --finetune checkpoint (ours); else --model
    num_classes=None,        # from the data
    drop_path_rate=0.05,     # see above: issue 45 removes stochastic depth; cosub needs tau > 0 (supplement B.1: 0.05)
    drop_path_mode='esd',
    drop_path_schedule='uniform',
)
# 224x224 (thesis Table 6.11 and supplement A.2: models pre-trained at 224 fine-tuned at 224); data per dataset.
input_size = 224
data = dict(
    _delete_=True,
    type=None,               # set by each dataset config
    path=None,
    num_train_images=None,   # set by each dataset config (supplement Table A.2); used by --dry-run only
    num_workers=10,
    repeated_aug=3,          # DeiT main.py default (--repeated-aug), "the same as for training on ImageNet"
    train_transform=dict(crop='rrc', rrc_scale=(0.08, 1.0), hflip=0.5, three_augment=True, color_jitter=0.3),
    eval_crop_ratio=1.0,     # DeiT III Table 6.11; 0.875 helps on iNaturalist (thesis Figure 6.6)
    mean=(0.485, 0.456, 0.406),  # ImageNet RGB mean/std as DeiT III normalises (timm IMAGENET_DEFAULT_*)
    std=(0.229, 0.224, 0.225),
    backend='pil',               # 'pil': workers decode (PIL, JPEG draft) and crop; 'dali': NVIDIA DALI decodes
                                 # and crops on the GPU (pip install nvidia-dali-cuda120). Both feed
                                 # pretrain/augment.py (3-Augment, jitter, normalisation on the device)
    max_bad_fraction=0.001,
)
mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch')
loss = dict(type='ce', label_smoothing=0.1)
method = 'cosub'             # Table 14 fine-tunes with cosub (--no-cosub: the baseline)
optimizer = dict(
    _delete_=True,
    type='sgd',              # deit issue 45: SGD (timm's 'sgd': momentum with Nesterov, as DeiT's main.py --opt sgd)
    lr=None,                 # None: base_lr * sqrt(batch_size / base_batch_size) (supplement eq. A.1/A.2)
    base_lr=0.01,            # deit issue 45: lr 0.01 ...
    base_batch_size=768,     # ... at batch 768
    weight_decay=1e-4,       # deit issue 45
    momentum=0.9,            # DeiT main.py --momentum default
    eps=None,                # SGD has none; AdamW configs (iNat) set 1e-8, DeiT main.py --opt-eps default
    clip_grad=None,          # DeiT main.py --clip-grad default (no clipping)
    layer_decay=None,        # e.g. 0.65-0.85 (supplement Table A.1); the LR is then x layer_decay_lr_mult
    layer_decay_lr_mult=2.0,  # C_LD of supplement eq. A.2
    only=None,               # substrings of the parameters to train; the others are frozen (see flowers.py)
)
schedule = dict(sched='cosine', warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-5)  # DeiT main.py defaults
epochs = 1000                # deit issue 45
batch_size = 768             # deit issue 45
finetune = None              # the pretrained checkpoint (--finetune)
reset_head = True            # re-initialise a checkpoint head of the right size trained on other classes
