# DeiT III baseline ViT-B: 20-epoch fine-tune at 224 after deit3_vit_b (Tables 1, 8, 11).
# python pretrain/train.py --cfg deit3_vit_b_ft224 --finetune <output of deit3_vit_b>/checkpoint.pth
_base_ = ['./_base_/finetune_224.py']
model = dict(name='vit_b', drop_path_rate=0.2)   # DeiT III 224 fine-tuning command: --drop-path 0.2
dry_run = dict(gpus=8)                          # the command's GPU count
method = 'baseline'                                  # the baseline
