# CIFAR-100 (python version, fine labels): train 50,000 / test 10,000, 100 classes; upsampled to 224.
# Same procedure as CIFAR-10 (thesis 3.7.1.3: LR of training / 100, 1000 epochs). Table 14: 90.6-93.5 top-1.
_base_ = ['../_base_/transfer.py']
data = dict(type='cifar100', path='data/cifar100')   # holds cifar-100-python/
optimizer = dict(base_lr=7.5e-6)
schedule = dict(min_lr=1e-7)
epochs = 1000
