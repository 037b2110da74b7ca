# DeiT III baseline ViT-M on ImageNet-1k, 800 epochs, as the official command (no official ViT-M command: ViT-B's LR, tau 0.1 (Table 1), 224),
# trained at 224, evaluated at 224 (Table 1 / Table 11 DeiT III row)
_base_ = ['./_base_/deit3_baseline_in1k.py']
model = dict(name='vit_m', drop_path_rate=0.1)   # official command's --drop-path (Table 1 tau)
input_size = 224                                 # official command's --input-size
optimizer = dict(base_lr=0.003)                      # official command's --lr (unscaled)
dry_run = dict(gpus=8)                                 # official command's GPU count
