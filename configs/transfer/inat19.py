# iNaturalist 2019: train 265,240 / val 3,003, 1,010 classes (supplement Table A.2; train2019.json, val2019.json).
# The same recipe as iNaturalist 2018 (inat18.py: the authors' answer in facebookresearch/deit issue 105);
# Table 14: 72.7-80.1 top-1.
_base_ = ['./inat18.py']
data = dict(type='inat19', path='data/inat2019',   # holds train2019.json, val2019.json, train_val2019/
            num_train_images=265240)                  # supplement Table A.2
