# DeiT III baseline ViT-H on ImageNet-1k, 800 epochs, as the official command (--lr 3e-3 --drop-path 0.6 --input-size 160 (--node 4 --gpu 8)),
# then fine-tuned 20 epochs at 224: deit3_vit_h_ft224 (Table 11's DeiT III row; the Table 1 / Table 8
# 224 rows train at 224 instead: --input-size 224, then the same fine-tune)
_base_ = ['./_base_/deit3_baseline_in1k.py']
model = dict(name='vit_h', drop_path_rate=0.6)   # official command's --drop-path (Table 1 tau)
# The official --input-size 160 with patch 14: DeiT III's patch embedding (a stride-14 convolution) uses the
# top-left 154x154 of each 160x160 crop (11x11 patches). Our patch embedding refuses sizes that are not a
# multiple of the patch, so we train at 154: the same 121 tokens, crops 4% smaller.
input_size = 154
optimizer = dict(base_lr=0.003)                      # official command's --lr (unscaled)
dry_run = dict(gpus=32)                                 # official command's GPU count
