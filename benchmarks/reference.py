"""A plain-PyTorch loop of Algorithm 2, the yardstick `python -m rdcae.bench` measures against.

Same network, same loss, same prox, same stop rule as rdcae's Lightning path, written the
shortest way: tensors on the device, one index permutation per epoch, no DataLoader, no
Lightning, no logging, no checkpoints, default (contiguous NCHW) layout. Anything rdcae spends
beyond this is framework overhead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import binary_auroc

from rdcae.model.network import ConvAutoencoder, NetworkSpec
from rdcae.model.prox import prox_l21
from rdcae.model.score import reconstruction_error


class ReferenceLoop:
    def __init__(self, X: torch.Tensor, synthetic: torch.Tensor, lambda_: float = 1.6, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 1e-6, seed: int = 0, device: str | torch.device = "cpu",
                 chunk_size: int = 4096, spec: NetworkSpec | None = None) -> None:
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.X, self.synthetic = X.to(self.device), synthetic.to(self.device)  # (N, C, P, P), (N,) bool
        self.S = torch.zeros_like(self.X)
        spec = NetworkSpec(X.shape[1], X.shape[-1]) if spec is None else spec  # the run's (recipe=paper: sigmoid)
        self.net = ConvAutoencoder(spec).to(self.device)
        self.net.fit_normalization(self.X)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        self.lambda_, self.batch_size, self.chunk_size = lambda_, batch_size, chunk_size

    def epoch(self) -> None:
        scale = self.net.pixel_std if self.net.normalize else 1.0  # the loss in std units, as rdcae's
        for index in torch.randperm(len(self.X), device=self.device).split(self.batch_size):
            L = self.X[index] - self.S[index]
            loss = F.mse_loss(self.net(L) / scale, L / scale)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(chunk) for chunk in x.split(self.chunk_size)])

    @torch.no_grad()
    def end_block(self, update_S: bool = True, quantile: float = 0.999) -> tuple[float, float]:
        """S-update, then (train AUC synthetic vs normal, threshold); one host sync for the AUC."""
        if update_S:
            self.S = prox_l21(self.X - self.reconstruct(self.X - self.S), self.lambda_)
        errors = reconstruction_error(self.X, self.reconstruct(self.X))
        threshold = torch.quantile(errors[~self.synthetic], quantile)
        auc = binary_auroc(errors / (1 + errors), self.synthetic.long())
        return float(auc), float(threshold)

    def fit(self, block_epochs: int = 20, max_blocks: int = 30, warmup_blocks: int = 0,
            auc_target: float = 0.999) -> dict:
        """Algorithm 2 to the stop rule; returns blocks, epochs and the last train AUC and threshold."""
        auc = threshold = float("nan")
        for block in range(1, max_blocks + 1):
            for _ in range(block_epochs):
                self.epoch()
            auc, threshold = self.end_block(update_S=block > warmup_blocks)
            if auc > auc_target:
                break
        return {"blocks": block, "epochs": block * block_epochs, "train_auc": auc, "threshold": threshold}
