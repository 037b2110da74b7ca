# swin_b: cosub pre-training on ImageNet-21k, 90 epochs, the ViTs' 21k recipe (Table B.1: "We adopt the same
# pre-training recipe (90 epochs of Imnet21k pretraining and 50 epochs of fine-tuning) and adjust tau").
# The paper does not list B.1's tau values; ours: Swin's ImageNet-22k pre-training rate for B.
# Then: python pretrain/train.py --cfg swin_b_ft_in1k --finetune <output>/checkpoint.pth   (B.1: 86.2 / v2 77.2)
_base_ = ['./_base_/deit3_in21k.py']
model = dict(name='swin_base_patch4_window7_224', drop_path_rate=0.2)   # tau: see above
