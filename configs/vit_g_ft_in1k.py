# ViT-g: fine-tune the ImageNet-21k model on ImageNet-1k at 224 for 50 epochs (cosub Table 9: 86.5 top-1, 77.3 on
# ImageNet-v2; "We have not fine-tuned ViT-H and ViT-g at large resolutions"). Recipe: _base_/finetune_in1k.py.
# python pretrain/train.py --cfg vit_g_ft_in1k --finetune <output of vit_g_in21k>/checkpoint.pth
_base_ = ['./_base_/finetune_in1k.py']
# The paper gives no ViT-g fine-tuning value: ours are ViT-H's, the nearest size (vit_h_ft_in1k.py)
model = dict(name='vit_g', drop_path_rate=0.45)  # ours: ViT-H's, DeiT III fine-tuning command --drop-path 0.45
optimizer = dict(layer_decay=0.85)               # ours: ViT-H's LayerDecay (supplement Table A.1 stops at ViT-H)
train = dict(fsdp=True, grad_checkpointing=True)  # ours, for memory as in vit_g_in21k.py (see its dry run)
dry_run = dict(gpus=32)                          # ours: the DeiT III fine-tuning command's count for ViT-H (4 x 8)
