# DeiT III baseline ViT-L: 20-epoch fine-tune at 224 after deit3_vit_l (Tables 1, 8, 11).
# python pretrain/train.py --cfg deit3_vit_l_ft224 --finetune <output of deit3_vit_l>/checkpoint.pth
_base_ = ['./_base_/finetune_224.py']
model = dict(name='vit_l', drop_path_rate=0.45)   # DeiT III 224 fine-tuning command: --drop-path 0.45
dry_run = dict(gpus=8)                          # the command's GPU count
method = 'baseline'                                  # the baseline
