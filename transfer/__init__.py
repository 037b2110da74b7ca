"""Transfer learning (cosub Table 14): fine-tune pretrained backbones on CIFAR-10/100, Flowers-102, Stanford Cars
and iNaturalist 2018/2019 with the pretraining engine.

    python transfer/finetune.py --dataset cifar10 --data-path DIR --finetune CKPT
    python -m transfer.summary outputs/
"""
import pretrain  # noqa: F401  first: the engine sets the CPU threads' wait policy before torch loads (engine/threads.py)
