# DeiT III baseline ViT-S on ImageNet-1k, 800 epochs, as the official command (--lr 4e-3 --drop-path 0.05 --input-size 224 (--node 1 --gpu 8)),
# trained at 224, evaluated at 224 (Table 1 / Table 11 DeiT III row)
_base_ = ['./_base_/deit3_baseline_in1k.py']
model = dict(name='vit_s', drop_path_rate=0.05)   # official command's --drop-path (Table 1 tau)
input_size = 224                                 # official command's --input-size
optimizer = dict(base_lr=0.004)                      # official command's --lr (unscaled)
dry_run = dict(gpus=8)                                 # official command's GPU count
