# convnext_s: cosub pre-training on ImageNet-21k, 90 epochs, the ViTs' 21k recipe (Table B.1: "We adopt the same
# pre-training recipe (90 epochs of Imnet21k pretraining and 50 epochs of fine-tuning) and adjust tau").
# The paper does not list B.1's tau values; ours: ConvNeXt's own 22k rate for S is 0 (ConvNeXt paper); supplement B.1: "0.05 in such cases".
# Then: python pretrain/train.py --cfg convnext_s_ft_in1k --finetune <output>/checkpoint.pth   (B.1: 85.2 / v2 76.0)
_base_ = ['./_base_/deit3_in21k.py']
model = dict(name='convnext_small', drop_path_rate=0.05)   # tau: see above
