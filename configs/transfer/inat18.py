# iNaturalist 2018: train 437,513 / val 24,426, 8,142 classes (train2018.json, val2018.json).
# LR of training / 10 and 360 epochs (thesis 3.7.1.3). Crop ratio 1.0 as in Table 14 / Table 6.11; the thesis
# (Figure 6.6) finds 0.875 better on iNat: --cfg-options data.eval_crop_ratio=0.875. Table 14: 67.1-76.2 top-1.
_base_ = ['../_base_/transfer.py']
data = dict(type='inat18', path='data/inat2018')   # holds train2018.json, val2018.json, train_val2018/
optimizer = dict(base_lr=7.5e-5)
epochs = 360
