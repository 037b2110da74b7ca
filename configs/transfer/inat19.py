# iNaturalist 2019: train 265,240 / val 3,003, 1,010 classes (train2019.json, val2019.json).
# LR of training / 10 and 360 epochs (thesis 3.7.1.3). Crop ratio 1.0 as in Table 14; 0.875 is better on iNat
# (thesis Figure 6.6): --cfg-options data.eval_crop_ratio=0.875. Table 14: 72.7-80.1 top-1.
_base_ = ['../_base_/transfer.py']
data = dict(type='inat19', path='data/inat2019')   # holds train2019.json, val2019.json, train_val2019/
optimizer = dict(base_lr=7.5e-5)
epochs = 360
