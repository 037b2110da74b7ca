# ViT-S: fine-tune the ImageNet-21k model on ImageNet-1k at 224 for 50 epochs (Tables 10 and 12).
# python pretrain/train.py --cfg vit_s_ft_in1k --finetune <output of vit_s_in21k or vit_s_in21k_270ep>/checkpoint.pth
# Without LayerDecay (Table 10): --cfg-options optimizer.layer_decay=1.0 optimizer.layer_decay_lr_mult=1.0 (C_LD 1).
_base_ = ['./_base_/finetune_in1k.py']
model = dict(name='vit_s', drop_path_rate=0.05)   # DeiT III fine-tuning command --drop-path 0.05 (--node 2 --gpu 8)
optimizer = dict(layer_decay=0.7)                   # supplement Table A.1
dry_run = dict(gpus=16)                             # DeiT III fine-tuning command's GPU count (--node 2 --gpu 8)
