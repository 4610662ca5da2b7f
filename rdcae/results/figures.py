"""Pictures of a run: X / L / S grids (the paper's Figure 4), the ROC curve, the score histogram,
reconstruction error against SSIM (Figure 5) and the ROC curves of all methods (Figure 6)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402
from torchmetrics.functional.classification import binary_roc  # noqa: E402

from rdcae.data.images import portable  # noqa: E402
from rdcae.metrics.classification import as_probability  # noqa: E402


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
    scale = max((float(columns[g][r].abs().max()) for g in groups for r, res in zip(rows, residual) if res),
                default=1.0) or 1.0
    fig, axes = plt.subplots(len(rows), len(groups),
                             figsize=(2.2 * sum(len(columns[g][rows[0]]) for g in groups) / 2, 1.6 * len(rows) + 0.6),
                             squeeze=False)
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


def hardest_figure(normal_x: torch.Tensor, normal_scores: torch.Tensor, defect_x: torch.Tensor,
                   defect_scores: torch.Tensor, threshold: float, title: str,
                   defect_masks: torch.Tensor | None = None, k: int = 12) -> plt.Figure:
    """The k held-out normal patches that score highest (false alarms first) above the k real
    defect tiles that score lowest (misses first), each with its score; red = on the wrong side
    of the threshold. defect_masks (K, P, P): outlined in red on the defect tiles."""
    rows = []  # a normal patch is worst when it scores high, a defect tile when it scores low
    for label, x, scores, masks, is_normal in (("normal, highest", normal_x, normal_scores, None, True),
                                               ("defect, lowest", defect_x, defect_scores, defect_masks, False)):
        order = torch.argsort(scores, descending=is_normal)[:k]
        if len(order):
            rows.append((label, x[order], scores[order], None if masks is None else masks[order], is_normal))
    fig, axes = plt.subplots(len(rows), k, figsize=(1.1 * k, 1.45 * len(rows) + 0.5), squeeze=False)
    for i, (label, x, scores, masks, is_normal) in enumerate(rows):
        for j in range(k):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(x):
                ax.axis("off")
                continue
            ax.imshow(_tile(x[j : j + 1]), interpolation="nearest")
            if masks is not None and masks[j].any():
                ax.contour(masks[j].float().numpy(), levels=[0.5], colors="red", linewidths=0.8)
            wrong = (float(scores[j]) > threshold) == is_normal
            ax.set_title(f"{float(scores[j]):.2f}", fontsize=9, color="crimson" if wrong else "black")
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(f"{title} (threshold {threshold:.2f}; a score in crimson is on the wrong side of it: "
                 "a false alarm above, a miss below)", fontsize=10)
    fig.tight_layout()
    return fig


def roc_figure(fpr: torch.Tensor, tpr: torch.Tensor, auc: float, operating_point: tuple[float, float] | None,
               title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.plot(fpr.cpu().numpy(), tpr.cpu().numpy(), lw=2, label=f"RDCAE (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="gray", lw=1, label="chance")
    if operating_point is not None:
        ax.plot(*operating_point, "o", c="crimson",
                label=f"threshold (FPR {operating_point[0]:.3f}, TPR {operating_point[1]:.3f})")
    return _roc_axes(fig, ax, title)


def _roc_axes(fig, ax, title: str) -> plt.Figure:
    """Labels, unit square, legend and grid shared by the ROC figures."""
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


ERROR_LABEL = "reconstruction error ‖x − D(E(x))‖₂"


def score_label(kind: str, width: int) -> str:
    """The axis label of a run's anomaly score (model.score; the one model.score=auto chose)."""
    return ERROR_LABEL if kind == "norm" else f"strip score: ‖x − D(E(x))‖₂ over the worst {width} rows or columns"


def score_histogram(scores: dict[str, torch.Tensor], threshold: float, title: str,
                    xlabel: str = ERROR_LABEL) -> plt.Figure:
    """Distributions of the anomaly score per group with the recorded threshold."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    values = [s.detach().cpu().numpy() for s in scores.values() if len(s)]
    bins = np.linspace(min(v.min() for v in values), max(max(v.max() for v in values), threshold) * 1.02, 60)
    for (name, s) in scores.items():
        if len(s):
            ax.hist(s.detach().cpu().numpy(), bins=bins, alpha=0.55, label=f"{name} ({len(s)})", density=True)
    ax.axvline(threshold, c="crimson", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def roc_methods_figure(curves: dict[str, tuple], title: str) -> plt.Figure:
    """Figure 6: {method label: (fpr, tpr, auc or None)} in one axes, with the chance diagonal."""
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    styles = ["-", "--", "-.", ":"]
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        label = f"{name} (AUC = {auc:.3f})" if auc is not None else f"{name} (AUC n/a)"
        ax.plot(np.asarray(fpr), np.asarray(tpr), ls=styles[i % len(styles)] if i else "-", lw=2.4 if i == 0 else 1.6,
                label=label)
    ax.plot([0, 1], [0, 1], ls="--", c="gray", lw=1, label="chance")
    return _roc_axes(fig, ax, title)


def ssim_scores(x, r, data_range: float = 1.0) -> np.ndarray:
    """SSIM between each patch and its reconstruction (scikit-image's structural_similarity, the
    function the paper used), (N, C, P, P) twice -> (N,)."""
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    r = np.asarray(r.detach().cpu() if isinstance(r, torch.Tensor) else r, dtype=np.float64)
    return np.array([structural_similarity(a, b, channel_axis=0, data_range=data_range) for a, b in zip(x, r)])


def error_ssim_figure(
    train_errors, train_ssim, train_synthetic, test_errors, test_ssim, test_y, test_pred,
    threshold: float | None = None,
    title: str = "reconstruction error vs SSIM",
    xlabel: str = ERROR_LABEL,
) -> plt.Figure:
    """Figure 5: one point per patch, training normals and synthetic defects, test patches as TP / TN / FP / FN.

    All arrays are per patch (numpy or torch): errors ‖x − D(E(x))‖₂, SSIM(x, D(E(x))), train_synthetic
    bool, test_y 1 = real defect, test_pred 1 = flagged. Empty groups are left out of the legend.
    """
    def a(v) -> np.ndarray:
        return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

    train_errors, train_ssim, synthetic = a(train_errors), a(train_ssim), a(train_synthetic).astype(bool)
    test_errors, test_ssim, y, pred = a(test_errors), a(test_ssim), a(test_y).astype(bool), a(test_pred).astype(bool)
    groups = [  # (name, errors, ssim, colour, marker)
        ("train normal", train_errors[~synthetic], train_ssim[~synthetic], "tab:gray", "."),
        ("train synthetic defect", train_errors[synthetic], train_ssim[synthetic], "tab:orange", "x"),
        ("TN", test_errors[~y & ~pred], test_ssim[~y & ~pred], "tab:blue", "o"),
        ("TP", test_errors[y & pred], test_ssim[y & pred], "tab:red", "^"),
        ("FP", test_errors[~y & pred], test_ssim[~y & pred], "tab:purple", "s"),
        ("FN", test_errors[y & ~pred], test_ssim[y & ~pred], "black", "v"),
    ]
    fig, ax = plt.subplots(figsize=(6.8, 5.0))
    for name, e, s, colour, marker in groups:
        if len(e):
            ax.scatter(e, s, s=14 if marker in ".x" else 18, c=colour, marker=marker, alpha=0.6,
                       linewidths=0.8 if marker == "x" else 0, label=f"{name} ({len(e)})")
    if threshold is not None:
        ax.axvline(threshold, c="crimson", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("SSIM(x, D(E(x)))")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best", markerscale=1.5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@torch.no_grad()
def write_run_figures(module, dm, writer, output_dir: Path, step: int, auc: float, k: int = 8) -> None:
    """The figures of a trained run (a RobustAutoencoder on its DefectDataModule) as PNG in output_dir/figures
    and in TensorBoard (`writer`, a SummaryWriter): Figure 4 (X / L / S for training and test patches), the
    ROC curve, the score histogram, the hardest test patches and Figure 5."""
    fig_dir = output_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    kind, width = module.score_kind, module.hparams.get("score_width", 4)
    what = "error ‖x − x̂‖₂" if kind == "norm" else f"score ({kind}, width {width})"

    def save(fig, name: str) -> None:
        fig.savefig(fig_dir / f"{name}.png", dpi=110)
        writer.add_figure(name, fig, global_step=step)

    synthetic = dm.train_synthetic
    train = {}
    for group, idx in (("normal", (~synthetic).nonzero()[:k, 0]), ("synthetic defects", synthetic.nonzero()[:k, 0])):
        if len(idx):
            x, s = dm.train_x[idx], module.S[idx].cpu()
            train[group] = {"X": x, "L = X − S": x - s, "S": s}
    save(xls_figure(train, "training patches: X = L + S"), "fig4a_train_xls")

    test_reconstruction = module.reconstruct(dm.test_x).cpu()  # one pass over each set serves every figure
    test_scores = module.score_residual(dm.test_x, test_reconstruction)
    test_pred = module.decide(test_scores.to(module.device)).cpu()
    test = {}
    for group, label in (("normal (held out)", 0), ("real defects", 1)):
        idx = (dm.test_y == label).nonzero()[:k, 0]
        if len(idx):
            x, r = dm.test_x[idx], test_reconstruction[idx]
            test[group] = {"X": x, "R = D(E(X))": r, "|X − R|": x - r}
    save(xls_figure(test, "test patches: reconstruction and residual"), "fig4b_test_xr")

    if (dm.test_y == 1).any() and (dm.test_y == 0).any():
        fpr, tpr, _ = binary_roc(as_probability(test_scores), dm.test_y)
        pred = test_pred.bool()
        positive = dm.test_y == 1
        point = (float(pred[~positive].float().mean()), float(pred[positive].float().mean()))
        save(roc_figure(fpr, tpr, auc, point, "test ROC: held-out normals vs real defects"), "roc_test")

    train_reconstruction = module.reconstruct(dm.train_x).cpu()
    train_scores = module.score_residual(dm.train_x, train_reconstruction)
    groups = {"train normal": train_scores[~synthetic], "train synthetic": train_scores[synthetic],
              "test normal": test_scores[dm.test_y == 0], "test real defect": test_scores[dm.test_y == 1]}
    save(score_histogram(groups, float(module.threshold),
                         "reconstruction errors" if kind == "norm" else f"anomaly scores ({kind})",
                         xlabel=score_label(kind, width)), "score_histogram")
    normal, defect = dm.test_y == 0, dm.test_y == 1
    save(hardest_figure(dm.test_x[normal], test_scores[normal], dm.test_x[defect], test_scores[defect],
                                float(module.threshold), f"hardest test patches: {what}, defect masks outlined",
                                defect_masks=torch.from_numpy(dm.patches.test_defect_mask)), "hardest_test_patches")

    save(error_ssim_figure(
        train_errors=train_scores, train_ssim=ssim_scores(dm.train_x, train_reconstruction), train_synthetic=synthetic,
        test_errors=test_scores, test_ssim=ssim_scores(dm.test_x, test_reconstruction), test_y=dm.test_y,
        test_pred=test_pred, threshold=float(module.threshold),
        title=("reconstruction error vs SSIM (the paper's Figure 5)" if kind == "norm"
               else f"{what} vs SSIM (the paper's Figure 5)"), xlabel=score_label(kind, width)), "fig5_error_ssim")
    plt.close("all")


def write_detection_figures(detector, sources, writer, output_dir: Path, step: int, k: int = 3) -> list[Path]:
    """Whole-image detection on the run's own images, as `python -m rdcae.detect` would show it: the k
    defect images with the most defect pixels, their masks outlined in white, beside the detector's
    map, regions and verdict; PNG in output_dir/figures and images in TensorBoard."""
    from rdcae.inference.image import ImageDetector
    from rdcae.inference.overlay import overlay

    defects = [s for s in sources if s.role == "defect" and s.mask is not None]
    defects.sort(key=lambda s: -int(s.mask.sum()))
    image_detector = ImageDetector.from_detector(detector)
    fig_dir = output_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    stems = Counter(Path(s.path).stem for s in defects)  # a stem shared by defect types takes its folder's name
    paths = []
    for index, source in enumerate(defects[:k]):
        picture = overlay(source.image, image_detector.detect(source.image), source.mask)
        path = Path(source.path)
        name = f"{index}_" + portable(path.stem if stems[path.stem] == 1 else f"{path.parent.name}_{path.stem}")
        path = fig_dir / f"detect_{name}.png"
        picture.save(path)
        writer.add_image(f"detect/{name}", np.asarray(picture), global_step=step, dataformats="HWC")
        paths.append(path)
    return paths
