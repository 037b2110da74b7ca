# cosub ViT-L: 20-epoch fine-tune at 224 after low-resolution cosub training (Table 8 rows
# 128/192 or 126/182: python pretrain/train.py --cfg vit_l --input-size 128), with cosub kept on.
# python pretrain/train.py --cfg vit_l_ft224 --finetune <output of vit_l>/checkpoint.pth
_base_ = ['./_base_/finetune_224.py']
model = dict(name='vit_l', drop_path_rate=0.45)   # DeiT III 224 fine-tuning command: --drop-path 0.45
dry_run = dict(gpus=8)                          # the command's GPU count
