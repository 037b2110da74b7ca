# CIFAR-10 (python version): train 50,000 / test 10,000, 10 classes; 32x32 images upsampled to 224.
# CaiT/DeiT transfer procedure (thesis 3.7.1.3): LR of training / 100, 1000 epochs; batch 768, lr 7.5e-6
# (facebookresearch/dino#81). Table 14: 98.9-99.4 top-1.
_base_ = ['../_base_/transfer.py']
data = dict(type='cifar10', path='data/cifar10')   # holds cifar-10-batches-py/
optimizer = dict(base_lr=7.5e-6)
schedule = dict(min_lr=1e-7)   # below the peak LR (DeiT's default 1e-5 would exceed it)
epochs = 1000
