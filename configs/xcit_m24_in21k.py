# xcit_m24: cosub pre-training on ImageNet-21k, 90 epochs, the ViTs' 21k recipe (Table B.1: "We adopt the same
# pre-training recipe (90 epochs of Imnet21k pretraining and 50 epochs of fine-tuning) and adjust tau").
# The paper does not list B.1's tau values; ours: XCiT paper's rate for M24.
# Then: python pretrain/train.py --cfg xcit_m24_ft_in1k --finetune <output>/checkpoint.pth   (B.1: 86.5 / v2 77.9)
_base_ = ['./_base_/deit3_in21k.py']
model = dict(name='xcit_medium_24_p16_224', drop_path_rate=0.15)   # tau: see above
