"""Deep SVDD (Ruff et al. 2018, "Deep One-Class Classification") on the RDCAE architecture.

Following the reference implementation (github.com/lukasruff/Deep-SVDD-PyTorch):
  1. pretrain a bias-free autoencoder (biases would let φ collapse to a constant: Prop. 2 of the paper),
  2. c = mean of φ(x) over the training set after pretraining, entries with |c_i| < eps set to ±eps,
  3. train the encoder φ alone on
       one-class:      mean ‖φ(x) − c‖²                                   (Eq. 4)
       soft-boundary:  R² + 1/ν · mean max(0, ‖φ(x) − c‖² − R²)           (Eq. 3)
     with R ← the (1 − ν)-quantile of ‖φ(x) − c‖ over each mini-batch after `warm_up_epochs`.
Score: ‖φ(x) − c‖² (soft-boundary: minus R², so > 0 means outside the sphere).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F

from rdcae.model.network import ConvAutoencoder, NetworkSpec, map_in_chunks


@dataclass
class DeepSVDDSettings:
    """The `deep_svdd:` block of the run config (defaults and their sources in conf/train.yaml).
    The autoencoder pretraining uses model.lr and model.weight_decay, as the DCAE baseline does."""

    nu: float
    eps: float
    lr: float
    weight_decay: float
    lr_milestone: float
    warm_up_epochs: int

    def __post_init__(self) -> None:
        if not 0 < self.nu <= 1:
            raise ValueError(f"deep_svdd.nu={self.nu} must be in (0, 1]")
        if self.eps <= 0:
            raise ValueError(f"deep_svdd.eps={self.eps} must be > 0")


class DeepSVDD(L.LightningModule):
    """A bias-free ConvAutoencoder; `phase` says which objective `fit` optimises."""

    def __init__(
        self,
        spec: NetworkSpec,
        ae_lr: float,
        ae_weight_decay: float,
        settings: DeepSVDDSettings,
        objective: str = "one-class",
        epochs: int = 1,
        chunk_size: int = 4096,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if objective not in ("one-class", "soft-boundary"):
            raise ValueError(f"objective={objective!r}: choose 'one-class' or 'soft-boundary'")
        self.objective, self.settings = objective, settings
        self.ae_lr, self.ae_weight_decay, self.epochs, self.chunk_size = ae_lr, ae_weight_decay, epochs, chunk_size
        self.net = ConvAutoencoder(spec)  # bias-free: spec.bias=False
        self.channels_last = channels_last
        if channels_last:  # the layout of RobustAutoencoder (and of the DataModule's batches)
            self.net.to(memory_format=torch.channels_last)
        self.register_buffer("c", torch.zeros(spec.latent_dim))  # (latent_dim,)
        self.register_buffer("R", torch.tensor(0.0))
        self.phase = "pretrain"
        self._dist: torch.Tensor | None = None

    @property
    def soft(self) -> bool:
        return self.objective == "soft-boundary"

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """‖φ(x) − c‖² per patch. (B,)"""
        return (self.net.encode(x) - self.c).pow(2).sum(dim=1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch.x
        if self.phase == "pretrain":
            scale = self.net.pixel_std if self.net.normalize else 1.0  # the loss of the DCAE (rdcae.model.robust)
            loss = F.mse_loss(self.net(x) / scale, x / scale)
        else:
            dist = self.distance(x)
            if self.soft:
                loss = self.R**2 + F.relu(dist - self.R**2).mean() / self.settings.nu
            else:
                loss = dist.mean()
            self._dist = dist.detach()
        self.log(f"{self.phase}/loss", loss, on_step=False, on_epoch=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # R solved optimally on the mini-batch after the parameter step, as in the reference.
        if self.phase == "svdd" and self.soft and self.current_epoch >= self.settings.warm_up_epochs:
            self.R.fill_(torch.quantile(self._dist.sqrt(), 1 - self.settings.nu))

    def configure_optimizers(self):
        if self.phase == "pretrain":
            return torch.optim.Adam(self.net.parameters(), lr=self.ae_lr, weight_decay=self.ae_weight_decay)
        s = self.settings
        optimizer = torch.optim.Adam(self.net.encoder.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        milestone = max(1, round(s.lr_milestone * self.epochs))
        return {"optimizer": optimizer,
                "lr_scheduler": torch.optim.lr_scheduler.MultiStepLR(optimizer, [milestone], gamma=0.1)}

    @torch.no_grad()
    def init_center(self, x: torch.Tensor) -> None:
        """c = mean φ(x) over the training set; |c_i| < eps → ±eps (a zero unit is matched by zero weights)."""
        c = self._chunked(self.net.encode, x).mean(dim=0)
        eps = self.settings.eps
        small = c.abs() < eps
        c[small & (c < 0)] = -eps
        c[small & (c >= 0)] = eps  # the reference leaves an exact 0 at 0; it is as trivial to match as a small one
        self.c.copy_(c)

    @torch.no_grad()
    def fit_radius(self, x: torch.Tensor) -> None:
        """R = (1 − ν)-quantile of ‖φ(x) − c‖ over the whole training set.

        The reference keeps the R of the last mini-batch, which can hold a handful of samples;
        the whole-set quantile is the same estimator without that noise (the AUC does not depend on R).
        """
        self.R.fill_(torch.quantile(self._chunked(self.distance, x).sqrt(), 1 - self.settings.nu))

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """‖φ(x) − c‖², minus R² for the soft-boundary objective. (N,)"""
        dist = self._chunked(self.distance, x)
        return dist - self.R**2 if self.soft else dist

    def _chunked(self, f, x: torch.Tensor) -> torch.Tensor:
        was_training = self.training
        self.eval()
        out = map_in_chunks(f, x, self.device, self.chunk_size, self.channels_last)
        self.train(was_training)
        return out


def train_deep_svdd(module: DeepSVDD, datamodule, make_trainer) -> DeepSVDD:
    """Pretrain the autoencoder, set c, train the encoder on the objective; `make_trainer()` gives a fresh Trainer."""
    module.phase = "pretrain"
    make_trainer().fit(module, datamodule=datamodule)
    trainer = make_trainer()
    module.phase = "svdd"
    module.to(trainer.strategy.root_device)
    module.init_center(datamodule.train_x)
    trainer.fit(module, datamodule=datamodule)
    module.to(trainer.strategy.root_device)
    if module.soft:
        module.fit_radius(datamodule.train_x)
    return module
