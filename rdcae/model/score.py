"""The anomaly score of a patch, from its residual r = x − D(E(x)).

Every score derives from the residual energy e = Σ_c r² per pixel (N, P, P): the norm sums it
over the patch, the strip over the patch's worst band of rows or columns, and a pixel map is e
itself. A patch is a defect when its score is above the threshold (rdcae.metrics.threshold).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCORES = ("norm", "strip")
# model.score=auto: the score of SCORES that ranks held-out synthetic defects best (RobustAutoencoder.choose_score)
AUTO = "auto"


def check_score(kind: str, width, patch_size: int, choices: tuple[str, ...] = SCORES) -> None:
    """Raise ValueError naming model.score / model.score_width when they cannot score a P×P patch."""
    if kind not in choices:
        raise ValueError(f"model.score={kind!r}: choose one of {', '.join(choices)} "
                         "(norm: ‖x − x̂‖₂ over the patch, the paper's score)")
    if not (isinstance(width, int) and not isinstance(width, bool) and 1 <= width <= patch_size):
        raise ValueError(f"model.score_width={width!r} must be an integer between 1 and patch_size={patch_size} "
                         "(the rows or columns of a strip)")


def residual_energy(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Σ over channels of (x − x̂)², per pixel. (N, P, P) from (N, C, P, P)."""
    return (x - x_hat).float().pow(2).sum(1)


def reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The paper's score ‖x − D(E(x))‖₂ over all pixels and channels, the square root of the summed
    residual energy (taken by torch's norm, whose rounding every recorded threshold has). (N,)"""
    return (x - x_hat).flatten(1).norm(dim=1)


def worst_run(lines: torch.Tensor, width: int) -> torch.Tensor:
    """The square root of the largest sum over `width` consecutive entries of energy per row and per
    column (N, 2, P). (N,)"""
    strips = F.avg_pool1d(lines, width, stride=1) * width  # energy of every run of `width` rows / columns
    return strips.flatten(1).amax(1).sqrt()


def strip_score(energy: torch.Tensor, width: int) -> torch.Tensor:
    """‖r‖₂ over the worst run of `width` consecutive rows or columns, from the energy (N, P, P). (N,)"""
    return worst_run(torch.stack([energy.sum(2), energy.sum(1)], 1), width)  # (N, 2, P): per row, per column


def energy_score(energy: torch.Tensor, kind: str = "norm", width: int = 4) -> torch.Tensor:
    """The anomaly score of each patch from its residual energy (N, P, P) alone: for a tile whose
    energy is averaged over overlapping windows (rdcae.inference.image, overlap). (N,)"""
    return energy.flatten(1).sum(1).sqrt() if kind == "norm" else strip_score(energy, width)


def anomaly_score(x: torch.Tensor, x_hat: torch.Tensor, kind: str = "norm", width: int = 4) -> torch.Tensor:
    """The anomaly score of each patch. (N,) from (N, C, P, P).

    norm   ‖r‖₂ over the whole patch (the paper's score).
    strip  ‖r‖₂ over the patch's worst strip: `width` consecutive rows or `width` consecutive
           columns, all channels. A thin defect along the weft or the warp (a broken pick, a
           broken end) puts its whole residual in one strip, where the patch-wide norm adds the
           texture residual of every other pixel to it. Always ≤ norm; equal when width = P.
    """
    check_score(kind, width, x.shape[-1])
    if kind == "norm":
        return reconstruction_error(x, x_hat)
    return strip_score(residual_energy(x, x_hat), width)
