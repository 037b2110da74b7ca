# cosub ViT-H: 20-epoch fine-tune at 224 after low-resolution cosub training (Table 8 rows
# 128/192 or 126/182: python pretrain/train.py --cfg vit_h --input-size 128), with cosub kept on.
# python pretrain/train.py --cfg vit_h_ft224 --finetune <output of vit_h>/checkpoint.pth
_base_ = ['./_base_/finetune_224.py']
model = dict(name='vit_h', drop_path_rate=0.55)   # DeiT III 224 fine-tuning command: --drop-path 0.55 (--batch 32 --node 2 --gpu 8)
dry_run = dict(gpus=16)                          # the command's GPU count
