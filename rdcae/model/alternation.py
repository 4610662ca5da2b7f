"""The alternation of Algorithm 2 as one Lightning callback on public hooks.

Lightning runs plain Adam epochs; every `block_epochs` epochs this callback
  0. with model.score=auto, takes the anomaly score (norm or strip) whose validation AUC (5.) is
     highest; every number below uses it,
  1. updates S ← prox_{λ,ℓ2,1}(X − D(E(X − S)))                  (lines 7–9),
  2. scores the training set (model.score; by default ‖x − D(E(x))‖₂) and computes the AUC
     of synthetic defects vs normals                              (line 10),
  3. records threshold = quantile_q(errors of normal patches: the calibration patches when the
     dataset has them, else the normal training samples; rdcae.metrics.threshold; before the
     block that ends training, an estimate from the clean validation patches alone; at that block
     in fp32, as the detector scores, while the other passes run in the training precision),
  4. stops training when the AUC exceeds `auc_target`             (lines 11–12),
     or, with `patience`, once the validation AUC (5.) has not risen by more than `min_delta`
     for `patience` blocks since it last rose from its lowest value (on_plateau): the train AUC
     scores synthetic defects the network has seen and on real fabric never reaches 0.999, so
     without it every run uses all max_blocks,
  5. records the validation AUC: calibration patches with fresh synthetic defects against the
     same patches clean (the DataModule's validation_x and validation_normal_x), a measure of
     detection that uses no real defect and no patch the network trained on (the train AUC
     scores synthetic defects the network and S have seen),
and logs one TensorBoard point per block. The trainer's max_epochs is
block_epochs × max_blocks, the upper limit of line 4.

The S-updates start once the network has learned the fabric. While its errors are all above λ,
the prox moves almost the whole residual of every sample into S; the network then only has to
reproduce its own output (L ≈ D(E(L))) and stops learning the fabric, a fixed point the
alternation never leaves (docs/EXPERIMENTS.md, entries 2 and 9). Two settings say when:
  warmup_blocks   the first S-update comes after at least this many blocks (0: the paper);
  start_fraction  ... and only once at most this fraction of the training samples has an error
                  ‖x − D(E(x))‖₂ above λ, i.e. once the first prox leaves S = 0 for all but that
                  fraction. null: start right after the warm-up, however large the errors.
Until the S-updates start, the run trains a plain autoencoder on X.

  s_fraction      null: every S-update uses the fixed λ. A fraction f: once the S-updates have
                  started, each uses the λ that leaves S non-zero for the fraction f of the
                  samples with the largest residuals (the 1 − f quantile of
                  ‖x_i − D(E(x_i − s_i))‖₂), however small the errors become; f = noise_ratio/100
                  keeps as many samples in S as carry synthetic defects (docs/EXPERIMENTS.md,
                  entry 15). The start rule above keeps the fixed λ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import lightning as L
import torch

from rdcae.metrics.classification import auc, aucs_by_kind
from rdcae.metrics.threshold import detection_threshold, threshold_source
from rdcae.model.robust import RobustAutoencoder


@dataclass(frozen=True)
class AlternationSettings:
    """The `alternation:` config node (defaults and their meaning in conf/train.yaml), checked once
    by rdcae.config before any work."""

    block_epochs: int = 20
    max_blocks: int = 30
    auc_target: float = 0.999
    warmup_blocks: int = 0
    start_fraction: float | None = None
    s_fraction: float | None = None
    patience: int | None = None
    min_delta: float = 0.002

    def __post_init__(self) -> None:
        for name in ("block_epochs", "max_blocks", "warmup_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"alternation.{name}={value!r} must be an integer")
        if self.block_epochs < 1 or self.max_blocks < 1:
            raise ValueError(f"alternation.block_epochs={self.block_epochs} and "
                             f"alternation.max_blocks={self.max_blocks} must be >= 1")
        if self.warmup_blocks < 0:
            raise ValueError(f"alternation.warmup_blocks={self.warmup_blocks} must be >= 0 (0: the S-updates may "
                             "start after the first block, as in the paper)")
        if not self.warmup_blocks < self.max_blocks:
            raise ValueError(f"alternation.warmup_blocks={self.warmup_blocks} must be in [0, max_blocks="
                             f"{self.max_blocks}): the S-updates wait at least warmup_blocks blocks; raise "
                             f"alternation.max_blocks above {self.warmup_blocks} or set alternation.warmup_blocks="
                             f"{self.max_blocks - 1}")
        if not 0 < self.auc_target <= 1:
            raise ValueError(f"alternation.auc_target={self.auc_target} must be in (0, 1]")
        if self.start_fraction is not None and not 0 <= self.start_fraction <= 1:
            raise ValueError(f"alternation.start_fraction={self.start_fraction} must be in [0, 1] "
                             "(the largest share of training errors above lambda at the first S-update), "
                             "or null to start after warmup_blocks")
        if self.patience is not None and (not isinstance(self.patience, int) or isinstance(self.patience, bool)
                                          or self.patience < 1):
            raise ValueError(f"alternation.patience={self.patience!r} must be a whole number of blocks >= 1 "
                             "(stop once the validation AUC has not risen for that many blocks), or null to run "
                             "until auc_target or max_blocks")
        if not isinstance(self.min_delta, (int, float)) or isinstance(self.min_delta, bool) or self.min_delta < 0:
            raise ValueError(f"alternation.min_delta={self.min_delta!r} must be a number >= 0 (the rise of the "
                             "validation AUC that counts as progress)")
        if self.s_fraction is not None and not 0 < self.s_fraction < 1:
            raise ValueError(f"alternation.s_fraction={self.s_fraction} must be in (0, 1) "
                             "(the share of training samples S holds after each S-update, "
                             "e.g. 0.03 for the 3 % synthetic defects), or null for the fixed lambda")

    @property
    def max_epochs(self) -> int:
        return self.block_epochs * self.max_blocks


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
    s_updated: bool = False  # whether this block ended with an S-update
    above_lambda_fraction: float = math.nan  # training samples with error > λ, before the S-update
    calibration_error_mean: float = math.nan  # mean error of the calibration patches (nan: none)
    validation_auc: float = math.nan  # held-out synthetic defects against the clean calibration patches (nan: none)
    score: str = "norm"  # the anomaly score of this block (model.score=auto: the one chosen by validation AUC)
    validation_aucs: dict = field(default_factory=dict)  # the validation AUC of every score kind
    # the λ of this block's S-update (alternation.s_fraction: from the residuals; nan: no update)
    s_lambda: float = math.nan


BEFORE_S = (" (before the S-updates started: S stayed 0, so the network trained as the plain DCAE does;"
            " docs/EXPERIMENTS.md, entry 19)")


class Alternation(L.Callback):
    """settings: the checked `alternation:` node; threshold_quantile: operating_point.quantile."""

    def __init__(self, settings: AlternationSettings, threshold_quantile: float = 0.999) -> None:
        self.settings = settings
        self.block_epochs, self.max_blocks = settings.block_epochs, settings.max_blocks
        self.auc_target, self.threshold_quantile = settings.auc_target, threshold_quantile
        self.warmup_blocks, self.start_fraction, self.s_fraction = (settings.warmup_blocks, settings.start_fraction,
                                                                    settings.s_fraction)
        self.history: list[BlockRecord] = []
        self.stop_reason = ""
        self.threshold_from = ""

    @property
    def max_epochs(self) -> int:
        return self.settings.max_epochs

    def ends_training(self, block: int, train_auc: float, validation_auc: float = math.nan) -> bool:
        """The stop rule (Algorithm 2, lines 4 and 11–12): the train AUC above its target, the last block,
        or (with patience) the validation AUC on its plateau, `validation_auc` being this block's."""
        return (train_auc > self.auc_target or block >= self.max_blocks
                or self.on_plateau([r.validation_auc for r in self.history[: block - 1]] + [validation_auc]))

    def on_plateau(self, validation_aucs: list[float]) -> bool:
        """Whether these per-block validation AUCs have stopped rising: the last rise above min_delta
        over the best since their lowest point lies `patience` or more blocks back. Only rises after
        the lowest point count: while the network still answers the mean patch (the first blocks of
        real fabric) the validation AUC falls from its untrained value, and that fall is no plateau."""
        patience = self.settings.patience
        if patience is None or any(map(math.isnan, validation_aucs)):
            return False
        rise = self.last_rise(validation_aucs)
        return rise is not None and len(validation_aucs) - 1 - rise >= patience

    def last_rise(self, validation_aucs: list[float]) -> int | None:
        """Index of the last block whose validation AUC rose above min_delta over the best since the
        lowest one, or None while it has not risen since then."""
        low = int(min(range(len(validation_aucs)), key=validation_aucs.__getitem__)) if validation_aucs else 0
        best, rise = validation_aucs[low] if validation_aucs else math.nan, None
        for i in range(low + 1, len(validation_aucs)):
            if validation_aucs[i] > best + self.settings.min_delta:
                best, rise = validation_aucs[i], i
        return rise

    @property
    def blocks(self) -> int:
        return len(self.history)

    @property
    def s_started(self) -> bool:
        return any(r.s_updated for r in self.history)

    def on_train_start(self, trainer: L.Trainer, module: RobustAutoencoder) -> None:
        # A resumed run writes a new TensorBoard folder: give it the blocks before the checkpoint too.
        for record in self.history:
            self._log(trainer, record)
        # A run resumed after it met its target must not train further: should_stop is not
        # part of Lightning's checkpoint, our history is.
        if self.history and (self.history[-1].train_auc > self.auc_target
                             or self.on_plateau([r.validation_auc for r in self.history])):
            trainer.should_stop = True
            # a run that had ended at its max_blocks on its plateau, resumed with more: say why no block follows
            # (one that ended on its train AUC says so in its reason already)
            if (self.history[-1].block < self.max_blocks and self.stop_reason.startswith("max_blocks=")
                    and "the resume added" not in self.stop_reason):
                self.stop_reason += ("; the resume added no block: training had ended with its validation AUC on "
                                     f"its plateau, where a run with max_blocks={self.max_blocks} from the start "
                                     "would have stopped too")

    def on_train_epoch_end(self, trainer: L.Trainer, module: RobustAutoencoder) -> None:
        epoch = trainer.current_epoch + 1
        loss = trainer.callback_metrics.get("train/loss")
        block = (epoch - 1) // self.block_epochs + 1
        if loss is not None and not torch.isfinite(loss):
            self._fail(trainer, f"the training loss became {loss.item()} in block {block} (epoch {epoch})")
        if epoch % self.block_epochs:
            return
        record = self.end_block(trainer, module, block, epoch, float(loss) if loss is not None else math.nan)
        if not self.ends_training(block, record.train_auc, record.validation_auc):
            return
        plateau = self.on_plateau([r.validation_auc for r in self.history])
        if record.train_auc > self.auc_target or (plateau and block < self.max_blocks):
            if record.train_auc > self.auc_target:
                self.stop_reason = (f"train AUC {record.train_auc:.4f} > auc_target {self.auc_target} "
                                    f"after block {block}")
            else:
                best = self.history[self.last_rise([r.validation_auc for r in self.history])]
                self.stop_reason = (f"validation AUC on its plateau after block {block}: no rise above "
                                    f"min_delta={self.settings.min_delta:g} for {block - best.block} blocks "
                                    f"(patience={self.settings.patience}; {best.validation_auc:.4f} in "
                                    f"block {best.block})")
            if module.robust and not self.s_started:
                self.stop_reason += BEFORE_S
            trainer.should_stop = True
        else:
            self.stop_reason = (f"max_blocks={self.max_blocks} reached (train AUC {record.train_auc:.4f})"
                                + ("; validation AUC on its plateau by then" if plateau else ""))
            if module.robust and not self.s_started:
                self.stop_reason += (
                    f"; S was never updated: more than start_fraction={self.start_fraction} of the training errors "
                    f"stayed above lambda={module.hparams.lambda_:g} (the outlier part S starts once the network "
                    "reconstructs most patches; more alternation.max_blocks lets it)"
                )

    @torch.no_grad()
    def end_block(self, trainer: L.Trainer, module: RobustAutoencoder, block: int, epoch: int,
                  loss: float) -> BlockRecord:
        dm = trainer.datamodule
        X, synthetic = dm.on_device("train_x", module.device), dm.on_device("train_synthetic", module.device)
        calibration, validation = (dm.on_device("calibration_x", module.device),
                                   dm.on_device("validation_x", module.device))
        head = dm.on_device("validation_normal_x", module.device)
        # The network runs in the precision it trains in (bf16 autocast under trainer.precision=bf16-mixed:
        # half the time of fp32 on a CPU, the residual norms within 0.1 %, docs/EXPERIMENTS.md entry 28);
        # the threshold comes from fp32 scores below, the arithmetic the detector and the test use.
        with trainer.precision_plugin.forward_context():
            reduced = torch.is_autocast_enabled(module.device.type)  # bf16-mixed (or 16-mixed) training
            # The held-out synthetic defects against the same calibration patches clean; one
            # reconstruction of each gives the validation AUC of every score.
            head_errors, head_by_kind = module.scores_by_kind(head) if len(head) else (None, {})
            validation_by_kind = module.scores_by_kind(validation)[1] if len(head) and len(validation) else {}
            validation_aucs = aucs_by_kind(head_by_kind, validation_by_kind)
            module.choose_score(validation_aucs)  # model.score=auto: the score every number below uses
            # (N,) ‖x − D(E(x))‖₂ and the anomaly score; the S-update changes S, not the network, and reuses
            # D(E(X)) for every sample S does not hold
            X_hat = module.reconstruct(X)
            errors, scores = module.error_and_score(X, x_hat=X_hat)
            above_lambda = float((errors > module.hparams.lambda_).float().mean())
            s_update = module.robust and block > self.warmup_blocks and (
                self.s_started or self.start_fraction is None or above_lambda <= self.start_fraction
            )
            s_lambda = math.nan
            if s_update:
                s_lambda = module.update_S(X, self.s_fraction, X_hat)
                if not torch.isfinite(module.S).all():
                    self._fail(trainer, f"S has non-finite values after the S-update of block {block}")
        normal_errors = errors[~synthetic]
        train_auc = auc(scores[~synthetic], scores[synthetic])
        # The threshold from every calibration patch at the block that ends training; before it, an
        # estimate from the clean validation patches, so that a block end stays cheap on a CPU.
        ending = self.ends_training(block, train_auc, validation_aucs.get(module.score_kind, math.nan))
        calibration_errors, calibration_scores = head_errors, head_by_kind.get(module.score_kind)
        if ending and len(calibration):
            calibration_errors, calibration_scores = module.error_and_score(calibration)
        elif ending and reduced:  # the threshold from the training normals, scored again in fp32
            scores = module.error_and_score(X)[1]
        module.threshold.fill_(detection_threshold(module.score, dm, self.threshold_quantile, scores,
                                                   calibration_scores))
        self.threshold_from = threshold_source(dm)
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
            s_updated=bool(s_update),
            above_lambda_fraction=above_lambda,
            calibration_error_mean=float(calibration_errors.mean()) if calibration_errors is not None else math.nan,
            validation_auc=validation_aucs.get(module.score_kind, math.nan),
            score=module.score_kind,
            validation_aucs=validation_aucs,
            s_lambda=s_lambda,
        )
        self.history.append(record)
        self._log(trainer, record)
        return record

    @staticmethod
    def _log(trainer: L.Trainer, record: BlockRecord) -> None:
        """One TensorBoard point per block: every number of its record, at step = block."""
        if trainer.logger is None:
            return
        logged = {f"block/{k}": v for k, v in asdict(record).items() if isinstance(v, (int, float)) and k != "block"}
        logged.update({f"block/validation_auc_{kind}": v for kind, v in record.validation_aucs.items()})
        trainer.logger.log_metrics(logged, step=record.block)

    def _fail(self, trainer: L.Trainer, what: str) -> None:
        last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        resume = (f"the last good checkpoint is {last} (resume with ckpt_path={last})" if last
                  else "no checkpoint was saved yet")
        raise FloatingPointError(f"{what}; {resume}. Try a lower model.lr or a larger lambda.")

    def state_dict(self) -> dict:
        return {"history": [asdict(r) for r in self.history], "stop_reason": self.stop_reason,
                "threshold_from": self.threshold_from}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = [BlockRecord(**r) for r in state_dict["history"]]
        self.stop_reason = state_dict["stop_reason"]
        self.threshold_from = state_dict.get("threshold_from", "")
