"""The methods of Table 4, run on the same patches and split as the RDCAE run (section 5.3).

    metrics = run_baselines(cfg, datamodule, epochs, methods, output_dir=None, writer=None, reference=None)

cfg          the composed run config (model, trainer, seed, operating_point.quantile; an optional
             `deep_svdd:` block with the Deep SVDD settings)
datamodule   the set-up DefectDataModule of the run: trained on train_x, scored on test_x against test_y
epochs       training epochs of DCAE and of each Deep SVDD phase; the paper uses the epochs RDCAE needed
methods      names from METHODS, e.g. list(cfg.baselines)
output_dir   where figures/fig6_roc_methods.png and baselines_test_scores.npz go (None: nowhere)
writer       a TensorBoard SummaryWriter for Figure 6 and the AUCs (None: no TensorBoard)
reference    test scores of methods already run, drawn beside the baselines: {"rdcae": scores (M,)}

returns      {method: {"auc": float|None, "f1": float|None, "accuracy": float|None, "epochs": int|None}},
             JSON-able; AUC is None when the test set has only one class; epochs is None for the
             scikit-learn methods (they read the DCAE's epochs).

`score_methods` gives the raw test scores and decisions of each method; rdcae.metrics.classification.evaluate the
metrics of a score vector.

The methods:
  dcae            the same autoencoder without S (model.robust=false), scored as RDCAE is (model.score;
                  ‖x − D(E(x))‖₂ by default)
  deep_svdd       Deep SVDD, one-class objective, on the bias-free encoder (rdcae.baselines.deep_svdd)
  deep_svdd_soft  Deep SVDD, soft-boundary objective with ν
  ocsvm_lrep      scikit-learn OneClassSVM (defaults) on the DCAE's 256-d latent representation
  ocsvm_aere      ... on the DCAE's reconstruction error (one feature: its score, as for dcae)
  iforest_lrep    scikit-learn IsolationForest (defaults, random_state=seed) on the latent
  iforest_aere    ... on the reconstruction error
  knn_pixel       not in the paper: the pixel distance of a patch to its nearest clean training patch
                  (scikit-learn NearestNeighbors), the floor any learned detector should clear
Decisions (for F1 and accuracy): DCAE, one-class Deep SVDD and the nearest neighbour flag scores above
the operating_point.quantile of their normal calibration (or training) scores, as RDCAE does; soft-boundary Deep
SVDD flags patches outside the sphere; OC-SVM and Isolation Forest their own predict() == −1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import OneClassSVM
from torchmetrics.functional.classification import binary_roc

from rdcae.baselines.deep_svdd import DeepSVDD, DeepSVDDSettings, train_deep_svdd
from rdcae.errors import ConfigError
from rdcae.metrics.classification import as_unit_interval, aucs_by_kind, evaluate
from rdcae.metrics.threshold import detection_threshold
from rdcae.model.network import NetworkSpec, map_in_chunks
from rdcae.model.robust import RobustAutoencoder
from rdcae.paper.tables import METHOD_LABELS
from rdcae.precision import trainer_precision
from rdcae.results import figures

PAPER_METHODS = ("dcae", "deep_svdd", "deep_svdd_soft", "ocsvm_lrep", "ocsvm_aere", "iforest_lrep", "iforest_aere")
METHODS = (*PAPER_METHODS, "knn_pixel")


@dataclass
class Scored:
    """One method's answer on the test set: scores (M,) higher = more anomalous, decisions (M,) bool."""

    scores: np.ndarray
    decisions: np.ndarray
    epochs: int | None
    model: Any  # the fitted module or estimator, for inspection


def check_methods(methods) -> list[str]:
    """The requested names, in order and without repeats; unknown ones are refused naming the setting."""
    methods = list(dict.fromkeys(methods or []))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"baselines={methods}: unknown method(s) {', '.join(map(repr, unknown))}; "
                          f"choose from {', '.join(METHODS)}")
    return methods


def run_baselines(
    cfg: DictConfig, datamodule, epochs: int, methods, output_dir: str | Path | None = None, writer=None,
    reference: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict]:
    """Train and test each method; write Figure 6 and the test scores; return the metrics (see the module docstring)."""
    scored = score_methods(cfg, datamodule, epochs, methods)
    labels = datamodule.test_y
    metrics = {name: {**evaluate(s.scores, labels, s.decisions), "epochs": s.epochs} for name, s in scored.items()}
    scores = {name: _numpy(s) for name, s in (reference or {}).items()} | {name: s.scores for name, s in scored.items()}
    if output_dir is not None and scored:
        output_dir = Path(output_dir)
        (output_dir / "figures").mkdir(parents=True, exist_ok=True)
        np.savez(output_dir / "baselines_test_scores.npz", test_y=_numpy(labels), **scores)
    if writer is not None:
        for name, m in metrics.items():
            for metric in ("auc", "f1"):  # F1 at the method's own threshold
                if m.get(metric) is not None:
                    writer.add_scalar(f"baselines/{name}/{metric}", m[metric])
    both_classes = bool((labels == 0).any()) and bool((labels == 1).any())
    if scored and both_classes and (output_dir is not None or writer is not None):
        fig = roc_methods_figure(scores, labels)
        if output_dir is not None:
            fig.savefig(output_dir / "figures" / "fig6_roc_methods.png", dpi=110)
        if writer is not None:
            writer.add_figure("fig6_roc_methods", fig)
        figures.plt.close(fig)
    return metrics


def roc_methods_figure(scores: dict[str, np.ndarray], labels: torch.Tensor):
    """Figure 6: the test ROC curve of every method, from its raw scores."""
    curves = {}
    for name, s in scores.items():
        fpr, tpr, _ = binary_roc(as_unit_interval(s), labels)
        curves[METHOD_LABELS.get(name, name)] = (fpr, tpr, evaluate(s, labels)["auc"])
    return figures.roc_methods_figure(curves, "test ROC: held-out normals vs real defects")


def score_methods(cfg: DictConfig, datamodule, epochs: int, methods) -> dict[str, Scored]:
    """Train each method on datamodule.train_x and score datamodule.test_x.
    The DCAE is trained once for all that need it."""
    methods = check_methods(methods)
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs={epochs} must be a positive integer (the paper uses the epochs RDCAE needed)")
    epochs = int(epochs)
    results: dict[str, Scored] = {}
    dcae: RobustAutoencoder | None = None
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # LREP / AERE of (train, test), shared by OC-SVM and IF
    for name in methods:
        if name == "dcae" or name.endswith(("_lrep", "_aere")):
            dcae = dcae or train_dcae(cfg, datamodule, epochs)
        if name == "dcae":
            scores = dcae.score(datamodule.test_x)
            results[name] = Scored(_numpy(scores), _numpy(dcae.decide(scores)).astype(bool), epochs, dcae)
        elif name == "knn_pixel":
            results[name] = nearest_neighbour(cfg, datamodule)
        elif name.startswith("deep_svdd"):
            results[name] = deep_svdd(cfg, datamodule, epochs,
                                      "soft-boundary" if name.endswith("_soft") else "one-class")
        else:
            results[name] = shallow(name, dcae, datamodule, int(cfg.seed), features)
    return results


# --- the methods ------------------------------------------------------------------------------


def make_trainer(cfg: DictConfig, epochs: int) -> L.Trainer:
    return instantiate(cfg.trainer, precision=trainer_precision(cfg.trainer), max_epochs=epochs, logger=False,
                       enable_checkpointing=False, callbacks=[])


def train_dcae(cfg: DictConfig, datamodule, epochs: int) -> RobustAutoencoder:
    """The RDCAE network and training without S, for `epochs` epochs; threshold as RDCAE's."""
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = RobustAutoencoder.from_config(cfg, datamodule.train_x, robust=False)
    trainer = make_trainer(cfg, epochs)
    trainer.fit(module, datamodule=datamodule)
    module.to(trainer.strategy.root_device)  # Lightning hands the module back on the CPU
    calibration_scores = None
    if len(datamodule.calibration_x):  # one pass over the calibration patches: the score's choice and the threshold
        calibration = module.scores_by_kind(datamodule.calibration_x)[1]
        if len(datamodule.validation_x):  # model.score=auto chooses by the held-out synthetic defects
            module.choose_score(aucs_by_kind(calibration, module.scores_by_kind(datamodule.validation_x)[1]))
        calibration_scores = calibration[module.score_kind]
    module.threshold.fill_(detection_threshold(module.score, datamodule, float(cfg.operating_point.quantile),
                                               calibration_scores=calibration_scores))
    return module


def deep_svdd(cfg: DictConfig, datamodule, epochs: int, objective: str) -> Scored:
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    m = cfg.model
    module = DeepSVDD(
        NetworkSpec.from_config(cfg, bias=False), ae_lr=float(m.lr), ae_weight_decay=float(m.weight_decay),
        objective=objective, settings=DeepSVDDSettings(**OmegaConf.to_container(cfg.deep_svdd, resolve=True)),
        epochs=epochs, channels_last=bool(m.channels_last),
    )
    module.net.fit_normalization(datamodule.train_x)
    train_deep_svdd(module, datamodule, lambda: make_trainer(cfg, epochs))
    scores = module.score(datamodule.test_x)
    if module.soft:
        decisions = scores > 0  # outside the sphere
    else:
        threshold = detection_threshold(module.score, datamodule, float(cfg.operating_point.quantile))
        decisions = scores > threshold
    return Scored(_numpy(scores), _numpy(decisions).astype(bool), epochs, module)


@torch.no_grad()
def dcae_features(dcae: RobustAutoencoder, x: torch.Tensor, kind: str) -> np.ndarray:
    """LREP: the 256-d latent E(x); AERE: the reconstruction error as a single feature. (N, F)"""
    if kind == "aere":
        return _numpy(dcae.score(x)).reshape(-1, 1)
    return _numpy(map_in_chunks(dcae.net.encode, x, dcae.device, dcae.chunk_size, channels_last=False))


def shallow(name: str, dcae: RobustAutoencoder, datamodule, seed: int, features: dict) -> Scored:
    """OC-SVM or Isolation Forest with scikit-learn's defaults (as the paper), fitted on the training set.
    `features` caches each kind of DCAE feature across the methods that use it."""
    kind, feature = name.split("_")
    if feature not in features:
        features[feature] = (dcae_features(dcae, datamodule.train_x, feature),
                             dcae_features(dcae, datamodule.test_x, feature))
    train, test = features[feature]
    estimator = OneClassSVM() if kind == "ocsvm" else IsolationForest(random_state=seed)
    estimator.fit(train)
    return Scored(-estimator.decision_function(test), estimator.predict(test) == -1, None, estimator)


def nearest_neighbour(cfg: DictConfig, datamodule) -> Scored:
    """The Euclidean pixel distance of each test patch to its nearest clean training patch. Without
    calibration patches the threshold comes from the training patches' distances to their nearest
    other training patch (their own is 0)."""
    train = _numpy(datamodule.train_clean).reshape(len(datamodule.train_clean), -1)
    index = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(train)

    def score(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(index.kneighbors(_numpy(x).reshape(len(x), -1))[0][:, 0])

    train_scores = None
    if not len(datamodule.calibration_x):
        train_scores = torch.from_numpy(index.kneighbors(train, n_neighbors=2)[0][:, 1])
    scores = score(datamodule.test_x)
    threshold = detection_threshold(score, datamodule, float(cfg.operating_point.quantile), train_scores=train_scores)
    return Scored(_numpy(scores), _numpy(scores > threshold).astype(bool), None, index)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


__all__ = ["METHODS", "PAPER_METHODS", "Scored", "check_methods", "dcae_features", "run_baselines", "score_methods"]
