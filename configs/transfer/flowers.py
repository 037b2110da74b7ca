# Oxford Flowers-102: train on trnid + valid (2,040 images), evaluate on tstid (6,149), 102 classes
# (supplement Table A.2, DeiT III). The small-set recipe of facebookresearch/deit issue 45 (SGD, lr 0.01,
# weight decay 1e-4, batch 768, 1000 epochs; given for CIFAR-10 and Cars, applied here too), in the base.
# Only the attention layers are fine-tuned, as DeiT III does on Flowers (thesis 6.3.5.1, +0.2%, following
# "Three things everyone should know about ViTs"). The parameters kept trainable are those of the official
# `--attn-only` (facebookresearch/deit main.py): every `blocks.N.attn.*` (qkv, proj), the new classifier `head.*`
# (it must learn the 102 classes) and `pos_embed`; patch embedding, cls token, MLPs, norms and LayerScale stay
# frozen. `--cfg-options optimizer.only=None` fine-tunes everything. Table 14: 96.4-98.9 top-1.
_base_ = ['../_base_/transfer.py']
data = dict(type='flowers', path='data/flowers102',   # holds jpg/, imagelabels.mat, setid.mat
            train_splits=['trnid', 'valid'], val_splits=['tstid'],
            num_train_images=2040)                  # supplement Table A.2
optimizer = dict(only=['.attn.', 'head.', 'pos_embed'])   # attention-only (thesis 6.3.5.1)
