# Stanford Cars: train 8,144 / test 8,041, 196 classes (supplement Table A.2; devkit .mat files, torchvision's
# layout). The authors' recipe for Cars (facebookresearch/deit issue 45): SGD, lr 0.01, weight decay 1e-4,
# batch 768, 1000 epochs; all in the base. Table 14: 89.9-94.5 top-1.
_base_ = ['../_base_/transfer.py']
data = dict(type='cars', path='data/stanford_cars',
            num_train_images=8144)                  # supplement Table A.2
