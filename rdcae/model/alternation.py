"""The alternation of Algorithm 2 as one Lightning callback on public hooks.

Lightning runs plain Adam epochs; every `block_epochs` epochs this callback
  1. updates S ← prox_{λ,ℓ2,1}(X − D(E(X − S)))                  (lines 7–9),
  2. scores the training set by ‖x − D(E(x))‖₂ and computes the AUC of synthetic
     defects vs normals                                           (line 10),
  3. records threshold = quantile_q(errors of the normal training samples),
  4. stops training when the AUC exceeds `auc_target`             (lines 11–12),
and logs one TensorBoard point per block. The trainer's max_epochs is
block_epochs × max_blocks, the upper limit of line 4.

warmup_blocks: the first S-update waits until the network has fitted X for that many blocks.
While its errors on normal patches are all above λ, the prox moves almost the whole residual
of every sample into S; the network then only has to reproduce its own output (L ≈ D(E(L)))
and stops learning the fabric, a fixed point the alternation never leaves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import lightning as L
import torch
from torchmetrics.functional.classification import binary_auroc

from rdcae.model.robust import RobustAutoencoder, as_probability, normal_quantile


@dataclass
class BlockRecord:
    block: int
    epoch: int
    loss: float
    train_auc: float
    threshold: float
    s_nonzero_fraction: float
    s_l21: float
    normal_error_mean: float
    synthetic_error_mean: float


class Alternation(L.Callback):
    def __init__(
        self, block_epochs: int = 20, max_blocks: int = 30, auc_target: float = 0.999, threshold_quantile: float = 0.999, warmup_blocks: int = 0
    ) -> None:
        if block_epochs < 1 or max_blocks < 1:
            raise ValueError(f"alternation.block_epochs={block_epochs} and alternation.max_blocks={max_blocks} must be >= 1")
        if not 0 <= warmup_blocks < max_blocks:
            raise ValueError(f"alternation.warmup_blocks={warmup_blocks} must be in [0, max_blocks={max_blocks})")
        if not 0 < auc_target <= 1:
            raise ValueError(f"alternation.auc_target={auc_target} must be in (0, 1]")
        if not 0 < threshold_quantile < 1:
            raise ValueError(f"alternation.threshold_quantile={threshold_quantile} must be in (0, 1)")
        self.block_epochs, self.max_blocks = block_epochs, max_blocks
        self.auc_target, self.threshold_quantile = auc_target, threshold_quantile
        self.warmup_blocks = warmup_blocks
        self.history: list[BlockRecord] = []
        self.stop_reason = ""

    @property
    def max_epochs(self) -> int:
        return self.block_epochs * self.max_blocks

    @property
    def blocks(self) -> int:
        return len(self.history)

    def on_train_start(self, trainer: L.Trainer, module: RobustAutoencoder) -> None:
        # A run resumed after it met its target must not train further: should_stop is not
        # part of Lightning's checkpoint, our history is.
        if self.history and self.history[-1].train_auc > self.auc_target:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, module: RobustAutoencoder) -> None:
        epoch = trainer.current_epoch + 1
        loss = trainer.callback_metrics.get("train/loss")
        block = (epoch - 1) // self.block_epochs + 1
        if loss is not None and not torch.isfinite(loss):
            self._fail(trainer, f"the training loss became {loss.item()} in block {block} (epoch {epoch})")
        if epoch % self.block_epochs:
            return
        record = self.end_block(trainer, module, block, epoch, float(loss) if loss is not None else math.nan)
        if record.train_auc > self.auc_target:
            self.stop_reason = f"train AUC {record.train_auc:.4f} > auc_target {self.auc_target} after block {block}"
            if block <= self.warmup_blocks:
                self.stop_reason += " (during warm-up: S was never updated)"
            trainer.should_stop = True
        elif block >= self.max_blocks:
            self.stop_reason = f"max_blocks={self.max_blocks} reached (train AUC {record.train_auc:.4f})"

    @torch.no_grad()
    def end_block(self, trainer: L.Trainer, module: RobustAutoencoder, block: int, epoch: int, loss: float) -> BlockRecord:
        dm = trainer.datamodule
        X, synthetic = dm.on_device("train_x", module.device), dm.on_device("train_synthetic", module.device)
        if module.robust and block > self.warmup_blocks:
            module.update_S(X)
            if not torch.isfinite(module.S).all():
                self._fail(trainer, f"S has non-finite values after the S-update of block {block}")
        errors = module.score(X)  # (N,)
        normal_errors = errors[~synthetic]
        module.threshold.fill_(normal_quantile(errors, synthetic, self.threshold_quantile))
        train_auc = float(binary_auroc(as_probability(errors), synthetic.long())) if synthetic.any() and (~synthetic).any() else math.nan
        norms = module.S.flatten(1).norm(dim=1)
        record = BlockRecord(
            block=block,
            epoch=epoch,
            loss=loss,
            train_auc=train_auc,
            threshold=float(module.threshold),
            s_nonzero_fraction=float((norms > 0).float().mean()),
            s_l21=float(norms.sum()),
            normal_error_mean=float(normal_errors.mean()),
            synthetic_error_mean=float(errors[synthetic].mean()) if synthetic.any() else math.nan,
        )
        self.history.append(record)
        if trainer.logger is not None:
            trainer.logger.log_metrics({f"block/{k}": v for k, v in asdict(record).items() if k != "block"}, step=block)
        return record

    def _fail(self, trainer: L.Trainer, what: str) -> None:
        last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        resume = f"the last good checkpoint is {last} (resume with ckpt_path={last})" if last else "no checkpoint was saved yet"
        raise FloatingPointError(f"{what}; {resume}. Try a lower model.lr or a larger lambda.")

    def state_dict(self) -> dict:
        return {"history": [asdict(r) for r in self.history], "stop_reason": self.stop_reason}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = [BlockRecord(**r) for r in state_dict["history"]]
        self.stop_reason = state_dict["stop_reason"]
