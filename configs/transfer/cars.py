# Stanford Cars: train 8,144 / test 8,041, 196 classes (devkit .mat files, torchvision's layout).
# LR of training / 10 and 1000 epochs (thesis 3.7.1.3); batch 768 (facebookresearch/deit#45). Table 14: 89.9-94.5.
_base_ = ['../_base_/transfer.py']
data = dict(type='cars', path='data/stanford_cars')
optimizer = dict(base_lr=7.5e-5)
epochs = 1000
