# Demo: a ViT-Ti UperNet trained from scratch for 40 iterations on CPU on the synthetic ADE20k-layout dataset
#   python -m segmentation.demo_data data/ade_demo
# It runs the whole path of the real configs (our backbone, layer decay, MMSeg's UperNet, IoUMetric, checkpoints,
# resume, TTA) in about a minute; the mIoU means nothing. Only sizes, schedule and data location change.
_base_ = ['./_base_/upernet_vit.py']

data_root = 'data/ade_demo/ADEChallengeData2016'
crop_size = (128, 128)
scale = (512, 128)  # the ADE20k recipe's (2048, 512), divided by 4 like the crop
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='vit_t', img_size=128, init_cfg=None),
    neck=dict(embed_dim=192),
    decode_head=dict(in_channels=[192, 192, 192, 192], channels=64),
    auxiliary_head=dict(in_channels=192, channels=64))
optim_wrapper = dict(optimizer=dict(lr=1e-3))  # from scratch, 40 iterations
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=5),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=5, end=40),
]
train_cfg = dict(max_iters=40, val_interval=20)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=20))
randomness = dict(seed=0)

# MMSeg's ADE20k pipelines with the smaller scale (a pipeline list can only be replaced as a whole).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# The base's multi-scale test, relative to the demo's scale (the base's is relative to 2048x512).
tta_scale = scale
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(scale[0] * r), int(scale[1] * r)), keep_ratio=True)
         for r in [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]],   # the base's tta_ratios
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]]),
]
# No loader worker processes: small CPU machines, tiny images.
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
