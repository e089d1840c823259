"""Model option names that the CLI offers as choices, importable without torch (``--help`` stays fast)."""

from __future__ import annotations

# RGNet's Table 1 ablation variants: A = DenseASPP, G = graph convolutions, C-C = plain convs instead of both.
RGNET_VARIANTS = ("FC-CNN", "FCN", "FCN-A", "FCN-G", "FCN-A-G", "FCN-C-C")
# DenseASPP's dilation rates in the paper (Sec. 3.1; Table 3 compares others).
RGNET_ASPP_RATES = (3, 6, 12, 18)
