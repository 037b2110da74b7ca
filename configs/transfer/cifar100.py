# CIFAR-100 (python version, fine labels): train 50,000 / test 10,000, 100 classes (supplement Table A.2);
# upsampled to 224. The CIFAR-10 recipe of facebookresearch/deit issue 45 (the authors give no separate
# CIFAR-100 one); all in the base. Table 14: 90.6-93.5 top-1.
_base_ = ['../_base_/transfer.py']
data = dict(type='cifar100', path='data/cifar100',   # holds cifar-100-python/
            num_train_images=50000)                   # supplement Table A.2
