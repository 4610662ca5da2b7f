"""Pictures of a run: X / L / S grids (the paper's Figure 4), the ROC curve and the score histogram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _tile(x: torch.Tensor, gap: int = 2) -> np.ndarray:
    """(k, C, P, P) in [0, 1] -> one (P, k·(P+gap), 3) row."""
    x = x.detach().float().cpu().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    k, _, p, _ = x.shape
    row = np.ones((p, k * (p + gap) - gap, 3), dtype=np.float32)
    for i in range(k):
        row[:, i * (p + gap) : i * (p + gap) + p] = x[i].permute(1, 2, 0).numpy()
    return row


def xls_figure(columns: dict[str, dict[str, torch.Tensor]], title: str) -> plt.Figure:
    """A grid with one block of columns per group (e.g. normal, synthetic) and one row per part.

    columns: {group: {row label: (k, C, P, P)}}; rows whose label starts with "S" or "|" are
    residuals, shown as magnitude scaled to the largest residual of the figure (black = 0).
    """
    groups = list(columns)
    rows = list(columns[groups[0]])
    residual = [r.startswith(("S", "|")) for r in rows]
    scale = max((float(columns[g][r].abs().max()) for g in groups for r, res in zip(rows, residual) if res), default=1.0) or 1.0
    fig, axes = plt.subplots(len(rows), len(groups), figsize=(2.2 * sum(len(columns[g][rows[0]]) for g in groups) / 2, 1.6 * len(rows) + 0.6), squeeze=False)
    for j, g in enumerate(groups):
        for i, (r, res) in enumerate(zip(rows, residual)):
            x = columns[g][r]
            axes[i, j].imshow(_tile(x.abs().mean(1, keepdim=True) / scale if res else x), interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(r, rotation=0, ha="right", va="center", fontsize=11)
            if i == 0:
                axes[i, j].set_title(f"{g} ({len(x)})", fontsize=11)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def roc_figure(fpr: torch.Tensor, tpr: torch.Tensor, auc: float, operating_point: tuple[float, float] | None, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.plot(fpr.cpu().numpy(), tpr.cpu().numpy(), lw=2, label=f"RDCAE (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="gray", lw=1, label="chance")
    if operating_point is not None:
        ax.plot(*operating_point, "o", c="crimson", label=f"threshold (FPR {operating_point[0]:.3f}, TPR {operating_point[1]:.3f})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def score_histogram(scores: dict[str, torch.Tensor], threshold: float, title: str) -> plt.Figure:
    """Distributions of ‖x − D(E(x))‖₂ per group with the recorded threshold."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    values = [s.detach().cpu().numpy() for s in scores.values() if len(s)]
    bins = np.linspace(min(v.min() for v in values), max(max(v.max() for v in values), threshold) * 1.02, 60)
    for (name, s) in scores.items():
        if len(s):
            ax.hist(s.detach().cpu().numpy(), bins=bins, alpha=0.55, label=f"{name} ({len(s)})", density=True)
    ax.axvline(threshold, c="crimson", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("reconstruction error ‖x − D(E(x))‖₂")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
