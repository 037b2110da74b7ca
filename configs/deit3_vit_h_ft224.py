# DeiT III baseline ViT-H: 20-epoch fine-tune at 224 after deit3_vit_h (Tables 1, 8, 11).
# python pretrain/train.py --cfg deit3_vit_h_ft224 --finetune <output of deit3_vit_h>/checkpoint.pth
_base_ = ['./_base_/finetune_224.py']
model = dict(name='vit_h', drop_path_rate=0.55)   # DeiT III 224 fine-tuning command: --drop-path 0.55 (--batch 32 --node 2 --gpu 8)
dry_run = dict(gpus=16)                          # the command's GPU count
method = 'baseline'                                  # the baseline
