# ViT-M: fine-tune the ImageNet-21k model on ImageNet-1k with LayerDecay 0.75 (Table A.1).
# python pretrain/train.py --cfg vit_m_ft_in1k --finetune <output of vit_m_in21k>/checkpoint.pth
_base_ = ['./_base_/finetune_in1k.py']
model = dict(name='vit_m', drop_path_rate=0.1)
optimizer = dict(layer_decay=0.75)
