# DeiT III baseline ViT-L on ImageNet-1k, 800 epochs, as the official command (--lr 3e-3 --drop-path 0.45 --input-size 192 (--node 4 --gpu 8)),
# then fine-tuned 20 epochs at 224: deit3_vit_l_ft224 (Table 11's DeiT III row; the Table 1 / Table 8
# 224 rows train at 224 instead: --input-size 224, then the same fine-tune)
_base_ = ['./_base_/deit3_baseline_in1k.py']
model = dict(name='vit_l', drop_path_rate=0.45)   # official command's --drop-path (Table 1 tau)
input_size = 192                                 # official command's --input-size
optimizer = dict(base_lr=0.003)                      # official command's --lr (unscaled)
dry_run = dict(gpus=32)                                 # official command's GPU count
