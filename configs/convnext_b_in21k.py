# convnext_b: cosub pre-training on ImageNet-21k, 90 epochs, the ViTs' 21k recipe (Table B.1: "We adopt the same
# pre-training recipe (90 epochs of Imnet21k pretraining and 50 epochs of fine-tuning) and adjust tau").
# The paper does not list B.1's tau values; ours: ConvNeXt paper's ImageNet-22k pre-training rate for B.
# Then: python pretrain/train.py --cfg convnext_b_ft_in1k --finetune <output>/checkpoint.pth   (B.1: 85.8 / v2 76.9)
_base_ = ['./_base_/deit3_in21k.py']
model = dict(name='convnext_base', drop_path_rate=0.1)   # tau: see above
