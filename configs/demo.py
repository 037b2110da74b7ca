# The demo: real cosub + ESD pretraining of a small ViT on scikit-learn's digits (shipped inside the package:
# no data path, no download), on CPU in a couple of minutes. Digits 0-4 only: transfer/ then learns 5-9.
# 8x8 digits are upsampled to 16x16 and cut into 4x4 patches. Augmentation is milder than DeiT III's:
# no horizontal flip (digits are not mirror-symmetric), no 3-Augment (solarization erases white-on-black
# strokes) and a RandomResizedCrop that keeps at least half the digit. LAMB takes a higher LR at this size.
_base_ = ['./_base_/deit3_in1k.py']
model = dict(name='vit_t', embed_dim=96, depth=6, num_heads=3, patch_size=4, drop_path_rate=0.1)
input_size = 16
data = dict(type='digits', path=None, classes=[0, 1, 2, 3, 4], val_split='val', num_workers=2, repeated_aug=1,
            train_transform=dict(crop='rrc', rrc_scale=(0.5, 1.0), hflip=0.0, three_augment=False, color_jitter=0.3),
            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), num_train_images=None)   # size known only from the reader
mixup = dict(mixup_alpha=0.0, cutmix_alpha=0.0)   # too strong for 16x16 digits and a short run
optimizer = dict(type='lamb', lr=1e-2, weight_decay=0.02)
schedule = dict(warmup_epochs=3, min_lr=1e-5)
epochs = 30
batch_size = 64
train = dict(amp=None)
output_dir = 'outputs/demo'
mean_teacher = dict(decay=0.99)   # 330 steps here: an EMA horizon of ~100 steps (the base's 0.99996 would stay at init)
