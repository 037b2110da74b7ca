# Fine-tuning an ImageNet-21k model on ImageNet-1k (cosub supplement A.1): LR from eq. A.2,
# 1e-4 * sqrt(BS / 2048) * C_LD with C_LD = 2 under LayerDecay (per-size rates in Table A.1), 50 epochs,
# cross-entropy. Give the 21k checkpoint with --finetune; pos_embed is interpolated for other resolutions.
_base_ = ['./deit3_in1k.py']
loss = dict(type='ce', label_smoothing=0.1)
optimizer = dict(base_lr=1e-4, layer_decay=0.75, layer_decay_lr_mult=2.0)
epochs = 50
