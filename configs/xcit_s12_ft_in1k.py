# xcit_s12: 50-epoch ImageNet-1k fine-tuning of xcit_s12_in21k with cosub (Table B.1 / Table 12: 84.2 / v2 74.9).
# The ViTs' fine-tuning recipe without LayerDecay: supplement Table A.1 gives LD only for ViTs, so C_LD = 1.
_base_ = ['./_base_/finetune_in1k.py']
model = dict(name='xcit_small_12_p16_224', drop_path_rate=0.05)   # the pre-training tau (xcit_s12_in21k.py)
optimizer = dict(layer_decay=None)   # no LayerDecay (see above): eq. A.2 with C_LD = 1
