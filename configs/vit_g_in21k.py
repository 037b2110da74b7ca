# ViT-g/14 pretrained on ImageNet-21k with cosub for 90 epochs (cosub Table 9: "270 epochs except ViT-g (90
# epochs)"; 86.5 top-1 after fine-tuning on ImageNet-1k at 224 with vit_g_ft_in1k.py). Every other value is the
# ImageNet-21k recipe of _base_/deit3_in21k.py (supplement A.1, DeiT III 21k command): batch 2048, LR eq. A.1.
# python pretrain/train.py --cfg vit_g_in21k --dry-run   (FSDP, activation checkpointing, memory per device)
_base_ = ['./_base_/deit3_in21k.py']
# tau: supplement Table A.1 stops at ViT-H; ours is ViT-H's 21k value, as DeiT III trained its 1B-parameter ViT-H-52
# "just using the same stochastic depth drop-rate as for the ViT-H" (Touvron's thesis, DeiT III conclusion)
model = dict(name='vit_g', drop_path_rate=0.5)
# Our choices, for memory (the dry run prints the estimate): FSDP, since 1.0B parameters x 16 B of weights, gradients
# and LAMB state are 15 GiB per GPU unsharded, half a V100-32GB (the paper's GPU, Tables 11-12); activation
# checkpointing, since 64 images x 2 submodels per GPU keep ~29 GiB of activations without it, ~8 GiB with it.
train = dict(fsdp=True, grad_checkpointing=True)
dry_run = dict(gpus=32)          # ours: the DeiT III 21k commands' count for ViT-B/L/H (--node 4 --gpu 8): 64 per GPU
