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

# Hyper-parameters. The papers give no segmentation-specific values besides the schedule; we derive them:
# - lr 1.2e-4: DeiT III's UperNet code is XCiT's, whose ADE20k recipe is AdamW lr 6e-5, weight decay 0.01,
#   warm-up 1500 iterations then poly decay, without layer decay; the cosub supplement (A.1) doubles the LR
#   (C_LD = 2) when LayerDecay is used.
# - layer_decay_rate: cosub supplement Table A.1 by model size (ViT-S 0.7, ViT-B 0.75, ViT-L 0.8).
# - drop_path_rate: cosub Table A.1's ImageNet-21k rates (S 0.05, B 0.1, L 0.3), i.e. about its ImageNet-1k
#   rates (0.05 / 0.2 / 0.45) minus 0.1, the reduction the thesis (5.3.4) applies when fine-tuning.
#   drop_path_mode 'mask': with 2 images per GPU, efficient stochastic depth could only drop 0 or 1 of them
#   (an effective rate of 0 or 0.5), so we use exact per-sample masking here.
# - UperNet channels 512 (384 for ViT-S), as DeiT III (thesis 6.3.5.2).
# - Inference 'whole' (XCiT / DeiT III); the ViT interpolates its position embedding to any image size.
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
        drop_path_rate=0.1,
        drop_path_mode='mask',
        # Our loader: our checkpoints (classifier or backbone-only), official DeiT III, timm, .safetensors.
        # Override: --cfg-options model.backbone.init_cfg.checkpoint=PATH
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/cosub_vit_b_in1k.pth')),
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    test_cfg=dict(mode='whole'))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    # Layer ids from our backbone: block i gets LD^(depth - 1 - i), embeddings LD^depth, neck and heads 1;
    # no weight decay for pos_embed, cls_token, norms, biases and LayerScale.
    constructor='segmentation.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.75))

# Linear warm-up for 1500 iterations, then poly (power 1) decay to 0 at the last iteration. When changing the
# length, change both: --cfg-options train_cfg.max_iters=N param_scheduler.1.end=N
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]

# 2 images per GPU; 8 GPUs give the 16 images per iteration of the papers.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
