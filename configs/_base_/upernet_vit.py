# UperNet on our plain DeiT III / cosub ViT-B for ADE20k 512x512, 160k iterations, 16 images per iteration
# (8 GPUs x 2), as in the cosub paper (section 5.4, Table 13) and DeiT III (thesis 6.3.5.2). The per-size configs
# state only what differs from this one. MMSeg provides everything else:
_base_ = [
    'mmseg::_base_/models/upernet_mae.py',      # Feature2Pyramid neck (x4, x2, x1, /2) + UPerHead + FCNHead aux
    'mmseg::_base_/datasets/ade20k.py',         # ADE20k pipelines (512x512 crops), IoUMetric, TTA (0.5-1.75, flip)
    'mmseg::_base_/default_runtime.py',         # SegTTAModel, logging
    'mmseg::_base_/schedules/schedule_160k.py',  # 160k iterations; validation and checkpoints every 16k
]
# Imported while the config is parsed, i.e. before the Runner imports mmseg.models: installs the compatibility
# layer (mmcv-lite ops, weights-only checkpoint loading; segmentation/compat.py).
custom_imports = dict(imports=['segmentation'], allow_failed_imports=False)

# Hyper-parameters: what the paper's numbers used. The cosub paper (5.4) says its UperNet is DeiT III's, and the
# DeiT III thesis (6.3.5.2) says "Our UperNet implementation is based on the XCiT repository" with UperNet
# channels 512 (384 for ViT-S). So the default is XCiT's ADE20k UperNet recipe (facebookresearch/xcit,
# semantic_segmentation/configs/xcit/upernet/*.py): AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01,
# no layer decay, linear warm-up 1500 iterations from 1e-6 then poly (power 1) to 0, 160k iterations of 16
# images (8 GPUs x 2), 'whole' inference, multi-scale test relative to 2048x512 (MMSeg 0.x, below). Drop-path:
# XCiT's per size (XCiT-S12 0.05 for ViT-S, XCiT-M24 0.15 for ViT-B); XCiT has no ViT-L-sized segmentation
# config, so ViT-L takes BEiT-L's UperNet value 0.2.
#   drop_path_mode 'mask': with 2 images per GPU, efficient stochastic depth could only drop 0 or 1 of them
#   (an effective rate of 0 or 0.5), so we use exact per-sample masking here.
# Named variants (configs/upernet_vit_*_cosub_beit.py, *_ld.py):
# - 'beit': BEiT's UperNet fine-tuning (microsoft/unilm beit/semantic_segmentation upernet_beit_*_512_slide_160k
#   _ade20k_pt2ft.py): lr 3e-5 (B) / 2e-5 (L), weight decay 0.05, LayerDecay 0.9 (B) / 0.95 (L) with BEiT's layer
#   ids, drop-path 0.1 (B) / 0.2 (L), slide inference 512 stride 341.
# - 'ld': this project's earlier derivation: lr 1.2e-4 (XCiT's 6e-5 x C_LD 2, supplement A.1), LayerDecay 0.7 /
#   0.75 / 0.8 (supplement Table A.1) with cosub layer ids, drop-path 0.05 / 0.1 / 0.3 (Table A.1 21k rates).
# LayerDecay ids: 'cosub' (supplement A.1: final block 1) vs 'beit' (BEiT/MMSeg: final block LD); with the same
# LD value the cosub ids give every backbone LR 1/LD higher (1.33x on ViT-B at 0.75); see segmentation/optim.py.
crop_size = (512, 512)
# Test images are padded to whole 16-pixel patches; MMSeg crops the padding off the prediction.
data_preprocessor = dict(size=crop_size, test_cfg=dict(size_divisor=16))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='backbones.CosubViT',
        arch='vit_b',
        img_size=512,
        drop_path_rate=0.15,     # XCiT-M24's UperNet rate (the XCiT model of ViT-B's size)
        drop_path_mode='mask',
        # Our loader: our checkpoints (classifier or backbone-only), official DeiT III, timm, .safetensors.
        # Override: --cfg-options model.backbone.init_cfg.checkpoint=PATH
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/cosub_vit_b_in1k.pth')),
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    test_cfg=dict(mode='whole'))

# Optimizer: AdamW with our layer-decay constructor (XCiT's recipe has no layer decay; the variants set one).
# MMEngine's 'AdamW' is torch.optim.AdamW; its foreach=None means the multi-tensor path when every parameter is on
# CUDA (torch's _default_to_fused_or_foreach), so nothing to set for host time per step.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),  # XCiT's ADE20k UperNet
    # No weight decay for pos_embed, cls_token, norms, biases and LayerScale (XCiT: norms and position embeddings).
    constructor='segmentation.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0,            # XCiT: no layer decay (1.0 = none)
                       layer_decay_convention='cosub'))  # ids used when a variant sets a rate (see above)

# Linear warm-up for 1500 iterations, then poly (power 1) decay to 0 at the last iteration. When changing the
# length, change both: --cfg-options train_cfg.max_iters=N param_scheduler.1.end=N
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),  # XCiT: warm-up 1500, ratio 1e-6
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),  # XCiT: poly, power 1
]

# Multi-scale + flip test as MMSeg 0.x ran it for XCiT / DeiT III / Swin (MultiScaleFlipAug, img_scale (2048, 512),
# ratios 0.5 ... 1.75): each ratio resizes the image to fit (2048 r, 512 r), keeping its aspect ratio. MMSeg 1.x's
# ADE20k base scales the original image by r instead (scale_factor=r), which is another test for images that
# are not 512 pixels on the short side.
tta_scale = (2048, 512)          # MMSeg 0.x ADE20k img_scale
tta_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]  # MMSeg 0.x / 1.x ADE20k img_ratios
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(tta_scale[0] * r), int(tta_scale[1] * r)), keep_ratio=True)
         for r in tta_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]]),
]

# 2 images per GPU; 8 GPUs give the 16 images per iteration of the papers.
train_dataloader = dict(batch_size=2)   # XCiT / BEiT: samples_per_gpu 2 on 8 GPUs
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
