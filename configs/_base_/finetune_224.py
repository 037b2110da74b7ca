# 20-epoch fine-tuning at 224 after ImageNet-1k training at a lower resolution (cosub Table 8: "We fine-tune
# during 20 epochs at resolution 224x224"; DeiT III's ViT-B/L/H models, Table 11). The cosub paper gives no
# other value, so this is the official DeiT III command ("finetuning for ViT-B, L and H at resolution 224x224",
# facebookresearch/deit README_revenge.md). Give the low-resolution checkpoint with --finetune.
# One deviation: the command uses RandAugment (--aa rand-m9-mstd0.5-inc1), which this project does not
# implement; we keep the DeiT III ImageNet-1k augmentation (RRC + 3-Augment, jitter 0.3).
_base_ = ['./deit3_in1k.py']
input_size = 224                  # --input-size 224
data = dict(repeated_aug=1)       # --no-repeated-aug
mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0)   # --mixup .8 --cutmix 1.0
loss = dict(type='ce', label_smoothing=0.1)       # no --bce-loss, --smoothing 0.1
optimizer = dict(
    type='adamw',                 # --opt adamw
    base_lr=1e-5,                 # --lr 1e-5 --unscale-lr: the LR as given ...
    base_batch_size=512,          # ... at the command's batch of 512 (64 x 8 GPUs; 32 x 16 for ViT-H)
    weight_decay=0.1,             # --weight-decay 0.1
)
schedule = dict(warmup_epochs=5, warmup_lr=1e-6)  # --warmup-epochs 5 --warmup-lr 1e-6
epochs = 20                       # --epochs 20
batch_size = 512                  # 64 x 8 GPUs (--batch 64 --node 1 --gpu 8)
