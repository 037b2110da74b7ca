# ViT-M pretrained on ImageNet-21k with cosub, long schedule (Tables 9, 10 and 12): 270 epochs
# (supplement A.1: "systematically set to 270 epochs") with tau + 0.05 (supplement A.1: "+0.05 when pre-training
# during 270 epochs on Imagenet21k"). Then fine-tune with vit_m_ft_in1k (224) or vit_m_ft_in1k_336/448.
_base_ = ['./vit_m_in21k.py']
model = dict(drop_path_rate=0.1)   # Table A.1's 0.05 + 0.05
epochs = 270                     # supplement A.1
