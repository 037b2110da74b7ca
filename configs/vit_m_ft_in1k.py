# ViT-M: fine-tune the ImageNet-21k model on ImageNet-1k at 224 for 50 epochs (Tables 10 and 12).
# python pretrain/train.py --cfg vit_m_ft_in1k --finetune <output of vit_m_in21k or vit_m_in21k_270ep>/checkpoint.pth
# Without LayerDecay (Table 10): --cfg-options optimizer.layer_decay=1.0 optimizer.layer_decay_lr_mult=1.0 (C_LD 1).
_base_ = ['./_base_/finetune_in1k.py']
model = dict(name='vit_m', drop_path_rate=0.1)   # no official ViT-M command: 0.1, between ViT-S's 0.05 and ViT-B's 0.15 (its Table A.1 1k tau)
optimizer = dict(layer_decay=0.75)                   # supplement Table A.1
dry_run = dict(gpus=32)                             # as ViT-B's DeiT III fine-tuning command (none for ViT-M)
