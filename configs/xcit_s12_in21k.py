# xcit_s12: cosub pre-training on ImageNet-21k, 90 epochs, the ViTs' 21k recipe (Table B.1: "We adopt the same
# pre-training recipe (90 epochs of Imnet21k pretraining and 50 epochs of fine-tuning) and adjust tau").
# The paper does not list B.1's tau values; ours: XCiT paper's rate for S12.
# Then: python pretrain/train.py --cfg xcit_s12_ft_in1k --finetune <output>/checkpoint.pth   (B.1: 84.2 / v2 74.9)
_base_ = ['./_base_/deit3_in21k.py']
model = dict(name='xcit_small_12_p16_224', drop_path_rate=0.05)   # tau: see above
