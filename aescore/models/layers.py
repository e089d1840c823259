"""RGNet's layers (Liu et al., WACV 2020, Sec. 3): DenseASPP, region-graph convolution, LSE pooling.

Notation follows the paper: X is [N, d'] (one row per region of the H x W feature map, N = HW);
``A``, ``B`` and ``W`` are d' x d' matrices. They are stored as ``nn.Linear`` weights without bias
(the paper has none), so phi(x) = A x is ``x @ A.T`` in row form, as ``nn.Linear`` computes it.
"""

from __future__ import annotations

import math
from typing import Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

_ModuleT = TypeVar("_ModuleT", bound=nn.Module)


def init_he_(module: _ModuleT) -> _ModuleT:
    """He (Kaiming) normal initialisation of every conv/linear weight in ``module`` (Sec. 3.3, ref. [13]).

    Biases start at zero and BatchNorm at the identity.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class DenseASPP(nn.Module):
    """DenseASPP (Sec. 3.1, Fig. 4): cascaded atrous 3x3 convs, densely concatenated.

    Layer i sees the concatenation of the input and every earlier layer's output, applies BN-ReLU
    then a 3x3 conv of dilation ``rates[i]`` (padding = dilation, sizes kept) with ``growth``
    outputs. The result concatenates the input and all layer outputs: ``in_ch + len(rates) * growth``
    channels (1024 + 4 x 64 = 1280 = d' for RGNet).
    """

    def __init__(self, in_ch: int = 1024, rates: Sequence[int] = (3, 6, 12, 18), growth: int = 64) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i, rate in enumerate(rates):
            ch = in_ch + i * growth
            self.layers.append(nn.Sequential(
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
                nn.Conv2d(ch, growth, 3, padding=rate, dilation=rate, bias=False),
            ))
        self.out_channels = in_ch + len(rates) * growth
        init_he_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_ch, H, W] -> [B, out_channels, H, W]."""
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


def pairwise_similarity(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Eq. 1: s(x_i, x_j) = (A x_i)^T (B x_j) for all region pairs; ``x`` [..., N, d] -> [..., N, N]."""
    return (x @ A.T) @ (x @ B.T).transpose(-1, -2)


def similarity_matrix(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Eq. 2: the adjacency S, Eq. 1's similarities softmax-normalised over each row (rows sum to 1).

    Materialises the N x N matrix: for tests and visualisation, not for the forward pass.
    """
    return torch.softmax(pairwise_similarity(x, A, B), dim=-1)


def region_graph_reference(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Eq. 3 plus the ReLU that follows each graph layer, explicitly: Z = ReLU(S X W).

    (The paper prints Z = SW; W is d' x d', so X must be between them.) With the ``nn.Linear``
    convention used here, "X W" is ``x @ W.T``. Reference for :func:`region_graph_conv`.
    """
    return torch.relu(similarity_matrix(x, A, B) @ (x @ W.T))


def region_graph_conv(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Eqs. 1-3 fused: ReLU(softmax((X A^T)(X B^T)^T) X W^T) as scaled-dot-product attention.

    softmax(Q K^T) V with Q = XA^T, K = XB^T, V = XW^T and scale 1 is exactly S X W, and
    ``scaled_dot_product_attention`` never materialises the N x N matrix S.
    """
    return torch.relu(F.scaled_dot_product_attention(x @ A.T, x @ B.T, x @ W.T, scale=1.0))


class RegionGraphConv(nn.Module):
    """One region-graph convolution block of Sec. 3.2 on a feature map: BN, then Z = ReLU(S X W).

    ``A``, ``B``, ``W`` are ``nn.Linear(dim, dim, bias=False)`` (the paper's matrices have no bias).
    The BatchNorm on the input follows Sec. 3.3 ("batch normalization is used before each weight
    layer"); ``norm=False`` drops it.

    In eval mode with autograd off (``torch.inference_mode``/``no_grad``) the block folds A and B into
    one matrix M = A^T B, so Q = X M and K = X give the same Q K^T = X A^T B X^T with one d' x d'
    projection fewer per region. M is cached and recomputed whenever A or B change.
    """

    def __init__(self, dim: int, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(dim) if norm else nn.Identity()
        self.A = nn.Linear(dim, dim, bias=False)
        self.B = nn.Linear(dim, dim, bias=False)
        self.W = nn.Linear(dim, dim, bias=False)
        self.fold_at_inference = True
        self._fold_cache: tuple[tuple, torch.Tensor] | None = None
        init_he_(self)

    def _folded_query_matrix(self, dtype: torch.dtype) -> torch.Tensor:
        a, b = self.A.weight, self.B.weight
        key = (a._version, b._version, a.data_ptr(), b.data_ptr(), a.device, dtype)
        if self._fold_cache is None or self._fold_cache[0] != key:
            with torch.autocast(a.device.type, enabled=False):
                m = (a.T.double() @ b.double()).to(dtype)  # float64: no extra rounding from the fold
            self._fold_cache = (key, m)
        return self._fold_cache[1]

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, dim] region features -> [B, N, dim]; no normalisation (callers apply ``norm``)."""
        if self.fold_at_inference and not self.training and not torch.is_grad_enabled():
            # under autocast the matmul casts M like any weight, so K = X is cast to Q's dtype too
            q = x @ self._folded_query_matrix(x.dtype)
            return torch.relu(F.scaled_dot_product_attention(q, x.to(q.dtype), self.W(x).to(q.dtype), scale=1.0))
        return region_graph_conv(x, self.A.weight, self.B.weight, self.W.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, dim, H, W] -> [B, dim, H, W]: every region attends to every region."""
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, N, C]
        z = self.forward_tokens(tokens)
        return z.transpose(1, 2).reshape(b, c, h, w)


def lse_pool(scores: torch.Tensor, r: float) -> torch.Tensor:
    """Eq. 4: Log-Sum-Exp pooling y^c = (1/r) log((1/HW) sum_ij exp(r Y^c_ij)) over H, W.

    ``scores`` [B, C, H, W] -> [B, C]. Computed stably as (logsumexp(r Y) - log HW) / r; r -> 0
    gives the mean, r -> inf the max; r = 0 returns the mean exactly.
    """
    flat = scores.flatten(2)
    if r == 0:
        return flat.mean(-1)
    return (torch.logsumexp(flat * r, dim=-1) - math.log(flat.shape[-1])) / r

