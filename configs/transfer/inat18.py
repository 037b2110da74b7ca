# iNaturalist 2018: train 437,513 / val 24,426, 8,142 classes (supplement Table A.2; train2018.json, val2018.json).
# The authors' iNaturalist recipe (facebookresearch/deit issue 105, for the base model): AdamW, batch 768,
# LR 7.5e-5 (the LR after scaling, deit issue 141), weight decay 0.05, 360 epochs, cosine, 5 warm-up epochs,
# repeated augmentation, smoothing 0.1, mixup 0.8 + cutmix 1.0, stochastic depth 0.1 (random erasing 0.1 and
# RandAugment are not implemented here; 3-Augment is used). Crop ratio 1.0 as in Table 14 / thesis Table 6.11;
# the thesis (Figure 6.6) finds 0.875 better on iNat: --cfg-options data.eval_crop_ratio=0.875. Table 14: 67.1-76.2 top-1.
_base_ = ['../_base_/transfer.py']
data = dict(type='inat18', path='data/inat2018',   # holds train2018.json, val2018.json, train_val2018/
            num_train_images=437513)                  # supplement Table A.2
model = dict(drop_path_rate=0.1)     # deit issue 105: stochastic depth 0.1
optimizer = dict(
    type='adamw',                    # deit issue 105
    base_lr=7.5e-5,                  # deit issue 105 / 141: 7.5e-5 at batch 768
    weight_decay=0.05,               # deit issue 105
    momentum=None,                   # AdamW has none
    eps=1e-8,                        # DeiT main.py --opt-eps default
)
epochs = 360                         # deit issue 105
