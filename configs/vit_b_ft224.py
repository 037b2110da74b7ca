# cosub ViT-B: 20-epoch fine-tune at 224 after low-resolution cosub training (Table 8 rows
# 128/192 or 126/182: python pretrain/train.py --cfg vit_b --input-size 128), with cosub kept on.
# python pretrain/train.py --cfg vit_b_ft224 --finetune <output of vit_b>/checkpoint.pth
_base_ = ['./_base_/finetune_224.py']
model = dict(name='vit_b', drop_path_rate=0.2)   # DeiT III 224 fine-tuning command: --drop-path 0.2
dry_run = dict(gpus=8)                          # the command's GPU count
