# Variant 'ld' of upernet_vit_l_cosub: the values this project used before following XCiT's recipe (derived,
# not from a paper): XCiT's lr 6e-5 doubled (C_LD = 2, cosub supplement A.1) with LayerDecay 0.8 (supplement
# Table A.1) on cosub layer ids, drop-path 0.3 (supplement Table A.1's ImageNet-21k rate).
_base_ = ['./upernet_vit_l_cosub.py']
model = dict(backbone=dict(drop_path_rate=0.3))                                # supplement Table A.1 (21k)
optim_wrapper = dict(
    optimizer=dict(lr=1.2e-4),                                                # 6e-5 x C_LD 2
    paramwise_cfg=dict(layer_decay_rate=0.8, layer_decay_convention='cosub'))  # supplement Table A.1
