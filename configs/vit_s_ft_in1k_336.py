# ViT-S: fine-tune the 270-epoch ImageNet-21k model (pre-trained at 224) on ImageNet-1k at 336x336
# (Table 9 and Figure B.1; cosub Table 9 used 336, not DeiT III's 384). pos_embed is interpolated on loading.
# python pretrain/train.py --cfg vit_s_ft_in1k_336 --finetune <output of vit_s_in21k_270ep>/checkpoint.pth
_base_ = ['./vit_s_ft_in1k.py']
input_size = 336
model = dict(drop_path_rate=0.1)   # the 224 fine-tune's 0.05 + 0.05 (supplement A.1: "+0.05 ... for large resolutions")
# The supplement (A.1) reduces the batch "for larger models or higher resolution" without saying to what; we keep
# 2048 through gradient accumulation (micro_batch_size), so eq. A.2 gives the same LR.
