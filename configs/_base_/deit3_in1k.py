# DeiT III recipe on ImageNet-1k with the cosub supplement's changes (appendix A.1): LAMB, BCE, 3-Augment
# with RandomResizedCrop, mixup 0.8 + cutmix 1.0, repeated augmentation, weight decay 0.02, cosub lambda 0.5.
model = dict(
    name='vit_b',
    num_classes=None,            # taken from the data
    drop_path_rate=0.2,          # tau, per model size (supplement Table A.1)
    drop_path_mode='esd',        # efficient stochastic depth; 'mask' = timm-style masking
    drop_path_schedule='uniform',
)
input_size = 224
data = dict(
    type='imagenet',
    path='data/imagenet',        # <path>/train/<wnid>/*.JPEG, <path>/val/<wnid>/*.JPEG
    train_split='train',
    val_split='val',
    v2_path=None,                # ImageNet-v2 folder (class folders 0..999), evaluated when given
    real_path=None,              # ImageNet-ReaL real.json, evaluated on val when given
    index_cache=None,            # folder for the cached file index (default ~/.cache/cosub)
    num_train_images=1281167,    # ImageNet-1k train (ILSVRC-2012); used by --dry-run for steps per epoch only
    num_workers=10,
    repeated_aug=3,
    train_transform=dict(crop='rrc', rrc_scale=(0.08, 1.0), hflip=0.5, three_augment=True, color_jitter=0.3),
    eval_crop_ratio=1.0,
    mean=(0.485, 0.456, 0.406),  # ImageNet RGB mean/std as DeiT III normalises (timm IMAGENET_DEFAULT_*)
    std=(0.229, 0.224, 0.225),
    backend='pil',               # 'pil': workers decode (PIL, JPEG draft) and crop; 'dali': NVIDIA DALI decodes
                                 # and crops on the GPU (pip install nvidia-dali-cuda120). Both feed
                                 # pretrain/augment.py (3-Augment, jitter, normalisation on the device)
    max_bad_fraction=0.001,      # unreadable images are skipped and counted; above this share the run stops
)
mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch')
loss = dict(type='bce', label_smoothing=0.0)   # BCE on ImageNet-1k (supplement A.1; DeiT III --bce-loss --smoothing 0.0)
# The training strategy (cosub Table 4 / Figure 2; pretrain/methods.py), --method: 'cosub' (e), 'baseline' (a, the
# DeiT III recipe alone; --no-cosub), 'kd' (b), 'mean_teacher' (c), 'cotrain' (d), 'kd_cosub' (b)+(e).
method = 'cosub'
cosub = dict(num_submodels=2,    # eq. 2: two submodels per image (appendix D: more)
             lam=0.5,            # eq. 2 lambda; Table 5: 0.5 is cosub (the official code's fixed 1/4 weights)
             soft=True)          # the other submodel's probabilities (the official code), not its argmax
# (b) KD: "the same lambda = 0.5 and same hyper-parameters as in DeiT III" (Table 4 caption). Neither the paper nor
# the official commands name the teacher: --teacher CHECKPOINT [--teacher-model NAME].
kd = dict(teacher=None,          # --teacher: a file, hf-hub:<owner>/<repo>[@rev] or local-dir:<folder>
          teacher_model=None,    # --teacher-model: its architecture where the file names none (ours, or timm's)
          lam=0.5,               # Table 4 caption
          target='hard',         # Figure 2 (b) names both, the paper not which Table 4 ran. 'hard': DeiT's hard
                                 # distillation, "a simple yet effective variant [50]" (Figure 2 (b)), the teacher's
                                 # argmax as a second label; the authors' standing choice (DeiT III thesis sec. 3.3,
                                 # Table 3.3: 83.0 hard against 81.8 soft for a ViT student). 'soft': the teacher's
                                 # probabilities (Figure 2 (b): "a teacher provides a (soft) target" [28])
          temperature=1.0,       # soft targets only; DeiT main.py --distillation-tau default
          mix='peer')            # kd_cosub only, OUR reconstruction (the paper gives no formula; cosub.py
                                 # kd_cosub_loss): 'peer', the teacher is one more peer of each submodel in eq. 2's
                                 # second term; 'label', DeiT's label/teacher mix (weight kd.lam) in its label term
# (c) mean teacher: the EMA of the weights (Tarvainen & Valpola, the paper's [49]) gives the soft target.
# The paper "performs a small grid-search" for the EMA (Table 4 caption) without giving it; ours starts at DeiT
# main.py's --model-ema-decay 0.99996. The grid we suggest (horizons of 1k to 25k steps; 625 steps per epoch at
# batch 2048): --cfg-options mean_teacher.decay=0.999 / 0.9996 / 0.9999 / 0.99996
mean_teacher = dict(lam=0.5,     # Table 4 caption
                    decay=0.99996,
                    # Our choice: a warm-up of the decay, min(decay, 1 - (1 + step / gamma)^-power) (timm ModelEmaV3
                    # use_warmup). Without it the EMA at 0.99996 is still more than half its random initialisation
                    # after 17k steps (28 epochs), the student distilling from a random network (Mean Teacher [49]
                    # ramps up its consistency weight for the same reason). The rows report the student.
                    warmup=True,
                    warmup_gamma=1.0,    # timm ModelEmaV3 default
                    warmup_power=0.75)   # timm ModelEmaV3 docstring: 3/4 "for models you plan to train for less"
                                         # than a million steps (Table 4: 500k); decay 0.999 at 10k steps
# (d) co-training of two models with their own initialisation and optimizer state.
cotrain = dict(lam=0.5)          # Table 4 caption
optimizer = dict(
    type='lamb',
    lr=None,                     # None: base_lr * sqrt(batch_size / base_batch_size)  (eq. A.1)
    base_lr=1e-3,
    base_batch_size=2048,
    weight_decay=0.02,
    clip_grad=1.0,               # DeiT III passes no --clip-grad, but its LAMB clips the global norm at 1.0 itself
                                 # (here the only clip: the engine turns timm LAMB's own off)
    layer_decay=None,            # LayerDecay LD (fine-tuning only; supplement Table A.1 per size)
    layer_decay_lr_mult=2.0,     # C_LD of supplement eq. A.2: the LR is doubled when layer_decay is set
    eps=1e-8,                    # DeiT III main.py --opt-eps default, passed to its LAMB (timm's own default is 1e-6)
    only=None,                   # substrings of the parameters to train (others frozen); None: all of them
    foreach=True,                # LAMB: ours (pretrain/engine/lamb.py, multi-tensor ops), timm's Lamb's update to
                                 # float rounding and its state dict; our choice, for host time per step (issue 17,
                                 # benchmarks/optimizer_step.py). False: timm.optim.Lamb
)
schedule = dict(sched='cosine', warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-5)
epochs = 800
batch_size = 2048                # global; kept on any number of GPUs
micro_batch_size = None          # per device and step; None = batch_size / number of GPUs
eval_batch_size = None
dry_run = dict(gpus=8)           # --dry-run: GPUs to split the batch over (the paper's count where a config states one)
train = dict(amp='bf16', fsdp=False, checkpoint_interval=1, checkpoint_steps=0, eval_interval=1, save_best=True,
             # torch.compile of the model (ours, not the official code's); the mode is torch.compile's: on an H200,
             # 'reduce-overhead' (CUDA graphs) took ViT-B/16 b256 from 31.6% MFU eager to 46.6%
             # (benchmarks/results/pretrain_step_cuda_vitb256.md); 'default' compiles without CUDA graphs
             compile=False, compile_mode='reduce-overhead',
             # activation checkpointing per residual block, as timm's --grad-checkpointing (our choice, off by
             # default: it trades a second forward of each block for its activations; vit_g_in21k turns it on)
             grad_checkpointing=False,
             log_interval=50)            # a progress line in train.log every this many steps (0: none)
seed = 0
device = 'auto'
output_dir = None                # default: outputs/<config name>
resume = None
finetune = None                  # initialise from this checkpoint (ours, official DeiT III or timm)
allow_partial_finetune = False   # True: accept a --finetune checkpoint that leaves backbone weights at init
reset_head = False               # True: re-initialise a loaded head of the right size trained on other classes
eval_only = False                # --eval: evaluate the --resume / --finetune weights, no training
overwrite = False                # --overwrite: move an earlier run in output_dir to previous-<UTC time>/ first
allow_pickle = False             # --allow-pickle: accept checkpoints that need pickled code (trusted files only)
