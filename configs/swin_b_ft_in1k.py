# swin_b: 50-epoch ImageNet-1k fine-tuning of swin_b_in21k with cosub (Table B.1 / Table 12: 86.2 / v2 77.2).
# The ViTs' fine-tuning recipe without LayerDecay: supplement Table A.1 gives LD only for ViTs, so C_LD = 1.
_base_ = ['./_base_/finetune_in1k.py']
model = dict(name='swin_base_patch4_window7_224', drop_path_rate=0.2)   # the pre-training tau (swin_b_in21k.py)
optimizer = dict(layer_decay=None)   # no LayerDecay (see above): eq. A.2 with C_LD = 1
