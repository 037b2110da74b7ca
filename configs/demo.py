# The demo: real cosub + ESD pretraining of a small ViT on scikit-learn's digits (ships with the package;
# no data path, no download), on CPU in a few minutes. 8x8 digits are upsampled to 16x16 and cut into 4x4
# patches. No horizontal flip (digits are not mirror-symmetric) and a Simple Random Crop instead of RRC.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='vit_t', embed_dim=96, depth=6, num_heads=3, patch_size=4, drop_path_rate=0.1)
input_size = 16
data = dict(type='digits', path=None, val_split='val', num_workers=2, repeated_aug=1,
            train_transform=dict(crop='src', hflip=0.0, three_augment=True, color_jitter=0.3),
            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
mixup = dict(mixup_alpha=0.0, cutmix_alpha=0.0)   # too strong for 16x16 digits and a short run
optimizer = dict(type='lamb', lr=4e-3, weight_decay=0.02)
schedule = dict(warmup_epochs=2, min_lr=1e-5)
epochs = 30
batch_size = 64
train = dict(amp=None)
output_dir = 'outputs/demo'
