# ViT-H: fine-tune the ImageNet-21k model on ImageNet-1k with LayerDecay 0.85 (Table A.1).
# python pretrain/train.py --cfg vit_h_ft_in1k --finetune <output of vit_h_in21k>/checkpoint.pth
_base_ = ['./_base_/finetune_in1k.py']
model = dict(name='vit_h', drop_path_rate=0.6)
optimizer = dict(layer_decay=0.85)
