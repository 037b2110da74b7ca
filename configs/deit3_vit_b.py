# DeiT III baseline ViT-B on ImageNet-1k, 800 epochs, as the official command (--lr 3e-3 --drop-path 0.2 --input-size 192 (--node 1 --gpu 8)),
# then fine-tuned 20 epochs at 224: deit3_vit_b_ft224 (Table 11's DeiT III row; the Table 1 / Table 8
# 224 rows train at 224 instead: --input-size 224, then the same fine-tune)
_base_ = ['./_base_/deit3_baseline_in1k.py']
model = dict(name='vit_b', drop_path_rate=0.2)   # official command's --drop-path (Table 1 tau)
input_size = 192                                 # official command's --input-size
optimizer = dict(base_lr=0.003)                      # official command's --lr (unscaled)
dry_run = dict(gpus=8)                                 # official command's GPU count
