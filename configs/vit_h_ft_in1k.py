# ViT-H: fine-tune the ImageNet-21k model on ImageNet-1k at 224 for 50 epochs (Tables 10 and 12).
# python pretrain/train.py --cfg vit_h_ft_in1k --finetune <output of vit_h_in21k or vit_h_in21k_270ep>/checkpoint.pth
# Without LayerDecay (Table 10): --cfg-options optimizer.layer_decay=1.0 optimizer.layer_decay_lr_mult=1.0 (C_LD 1).
_base_ = ['./_base_/finetune_in1k.py']
model = dict(name='vit_h', drop_path_rate=0.45)   # DeiT III fine-tuning command --drop-path 0.45
optimizer = dict(layer_decay=0.85)                   # supplement Table A.1
dry_run = dict(gpus=32)                             # DeiT III fine-tuning command's GPU count (--node 4 --gpu 8)
