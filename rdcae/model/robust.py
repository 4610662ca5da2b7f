"""The robust deep convolutional autoencoder (RDCAE) as a LightningModule.

X = L + S: the network is fitted to L = X − S by Adam (Algorithm 2, lines 5–6); S, one
(C, P, P) slice per training sample, is updated between epoch blocks by the ℓ2,1 prox
(lines 7–9, see `rdcae.model.alternation`). With robust=False S stays zero and this is the
plain DCAE baseline.
"""

from __future__ import annotations

import hashlib
import math

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score, BinaryStatScores

from rdcae.metrics.classification import as_probability
from rdcae.model.network import ConvAutoencoder, NetworkSpec, chunk_size_for, map_in_chunks
from rdcae.model.prox import prox_l21
from rdcae.model.score import AUTO, SCORES, anomaly_score, reconstruction_error


def state_digest(state_dict: dict) -> str:
    """SHA-256 of every tensor of a state dict, in key order: a checkpoint whose weights or S were
    damaged on disk no longer matches the digest saved with it."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode())
        digest.update(state_dict[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class RobustAutoencoder(L.LightningModule):
    """network: the NetworkSpec as a dict (hyperparameters stay plain data in the checkpoint);
    the other arguments are the model config's (rdcae.config checks them)."""

    def __init__(
        self,
        n_train: int,
        network: dict | None = None,
        lambda_: float = 1.6,
        robust: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        chunk_size: int | None = None,
        channels_last: bool = True,
        score: str = "norm",
        score_width: int = 4,
        clean_targets: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.score_kind = "norm" if score == AUTO else score  # auto: replaced by choose_score
        self.net = ConvAutoencoder(NetworkSpec.from_dict(network or {}))
        channels, patch_size = self.net.spec.channels, self.net.spec.patch_size
        if channels_last:  # NHWC: the layout oneDNN and cuDNN run these 5×5 convolutions fastest in
            self.net.to(memory_format=torch.channels_last)
        self.register_buffer("S", torch.zeros(n_train, channels, patch_size, patch_size))  # (N, C, P, P)
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self.test_metrics = MetricCollection(
            {"f1": BinaryF1Score(), "accuracy": BinaryAccuracy(), "stats": BinaryStatScores()}, prefix="test/"
        )
        self.test_auroc = BinaryAUROC()
        self.run_config: dict = {}  # the resolved run config, stored in every checkpoint

    @classmethod
    def from_config(cls, cfg, train_x: torch.Tensor, robust: bool | None = None) -> "RobustAutoencoder":
        """The module a run config asks for, normalised to its training set `train_x` (N, C, P, P);
        `robust` overrides model.robust (the DCAE baseline)."""
        m = cfg.model
        module = cls(
            n_train=len(train_x), network=NetworkSpec.from_config(cfg).to_dict(), lambda_=float(cfg["lambda"]),
            robust=bool(m.robust) if robust is None else robust, lr=float(m.lr), weight_decay=float(m.weight_decay),
            channels_last=bool(m.channels_last), score=str(m.score), score_width=int(m.score_width),
            clean_targets=bool(m.get("clean_targets", False)),
        )
        module.net.fit_normalization(train_x)
        return module

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["config"] = self.run_config
        checkpoint["score_kind"] = self.score_kind
        checkpoint["state_digest"] = state_digest(checkpoint["state_dict"])  # checked when a run resumes

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.run_config = checkpoint.get("config", {})
        self.score_kind = checkpoint.get("score_kind", self.score_kind)

    @property
    def robust(self) -> bool:
        return self.hparams.robust

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        L_ = batch.x - self.S[batch.index] if self.robust else batch.x  # L = X − S (Eq. 6)
        target = L_
        if self.hparams.get("clean_targets", False) and batch.clean is not None:
            # model.clean_targets: a decorated patch goes in with its synthetic defect and is fitted to
            # its clean original, so that the network learns to remove defect-like structure
            synthetic = batch.label.bool()[:, None, None, None]
            L_, target = torch.where(synthetic, batch.x, L_), torch.where(synthetic, batch.clean, L_)
        L_, target = self._layout(L_), self._layout(target)
        # Measured in units of the training-set std: pixel-unit gradients of a low-contrast fabric
        # are small enough for Adam's epsilon to shrink the steps and stall learning.
        scale = self.net.pixel_std if self.net.normalize else 1.0
        loss = F.mse_loss(self.net(L_) / scale, target / scale)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # --- the S-update and scoring, over whole sets in chunks ---------------------------------

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """D(E(x)) for a whole set, in chunks (`chunk_size`, else the module's, else what suits its
        device), on the module's device."""
        return map_in_chunks(self.net, x, self.device, chunk_size or self.chunk_size, self.hparams.channels_last)

    @property
    def chunk_size(self) -> int:
        """Patches per forward pass when a whole set is scored (rdcae.model.network.chunk_size_for)."""
        return self.hparams.get("chunk_size") or chunk_size_for(self.device)

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The anomaly score per patch (model.score; by default ‖x − D(E(x))‖₂). (N,)"""
        x = x.to(self.device)
        return self.score_residual(x, self.reconstruct(x))

    def score_residual(self, x: torch.Tensor, x_hat: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """The anomaly score of patches x against their reconstructions x_hat (the run's score
        unless `kind` names one of SCORES). (N,)"""
        return anomaly_score(x, x_hat, kind or self.score_kind, self.hparams.get("score_width", 4))

    @torch.no_grad()
    def scores_by_kind(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """‖x − D(E(x))‖₂ and every score of SCORES, from one reconstruction of x. (N,), {kind: (N,)}"""
        x = x.to(self.device)
        x_hat = self.reconstruct(x)
        error = reconstruction_error(x, x_hat)
        return error, {kind: error if kind == "norm" else self.score_residual(x, x_hat, kind) for kind in SCORES}

    def choose_score(self, aucs: dict[str, float]) -> str:
        """model.score=auto: take the score with the highest validation AUC (ties and NaN keep
        the paper's norm; no AUCs, e.g. without calibration patches: the norm); any other setting
        keeps its score."""
        if self.hparams.get("score", "norm") == AUTO:
            known = {kind: aucs[kind] for kind in SCORES if not math.isnan(aucs.get(kind, math.nan))}
            self.score_kind = max(known, key=known.get) if known else "norm"  # max keeps the first of equals: norm
        return self.score_kind

    @torch.no_grad()
    def error_and_score(self, x: torch.Tensor, chunk_size: int | None = None,
                        x_hat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """‖x − D(E(x))‖₂ (what the prox weighs against λ) and the anomaly score, from one
        reconstruction of x (x_hat when given). (N,), (N,); the same tensor twice with model.score=norm."""
        x = x.to(self.device)
        x_hat = self.reconstruct(x, chunk_size) if x_hat is None else x_hat
        error = reconstruction_error(x, x_hat)
        return error, error if self.score_kind == "norm" else self.score_residual(x, x_hat)

    @torch.no_grad()
    def update_S(self, X: torch.Tensor, fraction: float | None = None, X_hat: torch.Tensor | None = None) -> float:
        """S ← prox_{λ,ℓ2,1}(X − D(E(X − S))) (Algorithm 2, lines 7–9); returns the λ used.

        fraction: instead of the fixed λ, the 1 − fraction quantile of the residual norms, so
        that S is non-zero for that fraction of the samples (alternation.s_fraction).
        X_hat: D(E(X)) when the caller has it; then only the samples S holds are reconstructed
        again (for the others X − S = X), which saves a pass over the training set."""
        X = X.to(self.device)
        if X_hat is None:
            L_hat = self.reconstruct(X - self.S)
        else:
            held = self.S.flatten(1).ne(0).any(1)  # (N,) samples with s_i ≠ 0
            L_hat = X_hat
            if held.any():  # a copy only when some rows change: X_hat stays the caller's
                L_hat = X_hat.clone()
                L_hat[held] = self.reconstruct(X[held] - self.S[held]).to(L_hat.dtype)
        residual = X - L_hat
        lambda_ = self.hparams.lambda_
        if fraction is not None:
            lambda_ = float(torch.quantile(residual.flatten(1).norm(dim=1).float(), 1 - fraction))
        self.S.copy_(prox_l21(residual, lambda_))
        return lambda_

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """A patch is a defect when its score is above the recorded threshold."""
        return (scores > self.threshold).long()

    # --- test stage ---------------------------------------------------------------------------

    def on_test_epoch_start(self) -> None:
        if torch.isnan(self.threshold):
            raise RuntimeError("the model has no threshold yet: train it (or load a trained checkpoint) before testing")
        self._test_scores: list[torch.Tensor] = []

    def test_step(self, batch, batch_idx: int) -> None:
        # fp32 under trainer.precision=bf16-mixed too: the scores the threshold came from (scored outside
        # the step) and the ones the exported detector gives
        with torch.autocast(self.device.type, enabled=False):
            scores = self.score(batch.x)
        self._test_scores.append(scores.float())
        self.test_metrics.update(self.decide(scores), batch.label)
        self.test_auroc.update(as_probability(scores), batch.label)

    def on_test_epoch_end(self) -> None:
        results = self.test_metrics.compute()
        tp, fp, tn, fn, _ = results.pop("test/stats").tolist()
        # With one class in the test set the AUC is undefined (torchmetrics would report 0).
        auc = self.test_auroc.compute() if (tp + fn) and (tn + fp) else torch.tensor(float("nan"))
        self.log_dict({**results, "test/auc": auc})
        self.log_dict({"test/tp": float(tp), "test/fp": float(fp), "test/tn": float(tn), "test/fn": float(fn)})
        self.test_metrics.reset()
        self.test_auroc.reset()
        # in test-set order
        self.test_scores = torch.cat(self._test_scores).cpu() if self._test_scores else torch.empty(0)
