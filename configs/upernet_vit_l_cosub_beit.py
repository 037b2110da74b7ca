# Variant 'beit' of upernet_vit_l_cosub: BEiT's ADE20k UperNet fine-tuning recipe (microsoft/unilm,
# beit/semantic_segmentation/configs/beit/upernet/upernet_beit_large_24_512_slide_160k_ade20k_pt2ft.py), with BEiT's layer ids so its
# LayerDecay means the same here. Same schedule, crops and heads as the default.
_base_ = ['./upernet_vit_l_cosub.py']
model = dict(
    backbone=dict(drop_path_rate=0.2),                                        # BEiT config
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))   # BEiT config
optim_wrapper = dict(
    optimizer=dict(lr=2e-5, weight_decay=0.05),                                # BEiT config
    paramwise_cfg=dict(layer_decay_rate=0.95, layer_decay_convention='beit'))  # BEiT config and ids
