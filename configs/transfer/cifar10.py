# CIFAR-10 (python version): train 50,000 / test 10,000, 10 classes (supplement Table A.2); 32x32 images
# upsampled to 224. The authors' recipe for CIFAR-10 (facebookresearch/deit issue 45): SGD, lr 0.01,
# weight decay 1e-4, batch 768, 1000 epochs; all in the base. Table 14: 98.9-99.4 top-1.
_base_ = ['../_base_/transfer.py']
data = dict(type='cifar10', path='data/cifar10',   # holds cifar-10-batches-py/
            num_train_images=50000)                 # supplement Table A.2
