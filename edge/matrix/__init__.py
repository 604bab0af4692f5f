"""`edge matrix`: many timm models × targets × precisions, each cell exported, run on its real
runtime against eager PyTorch, checked for delegation and timed — one row per cell, and a failed
cell is a row naming the stage that failed, never a crashed run.

``MODELS``: the default list, mobile families with the activations and blocks users bring
(hard-swish/SE, SiLU, GELU, LayerNorm, attention, re-parameterizable and batch-norm-free blocks).
"""

from __future__ import annotations

MODELS: tuple[str, ...] = (
    "mobilenetv3_large_100", "mobilenetv3_small_100", "mobilenetv2_100", "mobilenetv4_conv_small",
    "mobilenetv4_hybrid_medium", "efficientnet_lite0", "efficientnet_b0", "tf_efficientnetv2_b0", "fbnetv3_b",
    "fbnetv3_g", "mnasnet_100", "ghostnetv2_100", "lcnet_100", "hardcorenas_a", "tinynet_a", "mobilevit_xs",
    "efficientformerv2_s0", "repvit_m0_9", "fastvit_t8", "mobileone_s0", "regnety_004", "resnet18",
    "convnext_atto", "edgenext_xx_small", "levit_128s", "efficientvit_b0",
)
