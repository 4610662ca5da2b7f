"""The proximal operator of λ‖S‖₂,₁ with one group per sample (section 3.1, after Zhou & Paffenroth)."""

from __future__ import annotations

import torch


def prox_l21(S: torch.Tensor, lambda_: float) -> torch.Tensor:
    """Block soft-thresholding: s_i ← s_i · max(0, 1 − λ / ‖s_i‖₂) for every sample i.

    Groups (samples) whose norm is at most λ become exactly zero; the others keep their
    direction and lose exactly λ of their norm.
    """
    norms = S.flatten(1).norm(dim=1)  # (N,)
    scale = torch.clamp(1 - lambda_ / norms.clamp_min(torch.finfo(S.dtype).tiny), min=0)
    return S * scale.view(-1, *([1] * (S.dim() - 1)))
