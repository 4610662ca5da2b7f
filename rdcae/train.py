"""Train and test one RDCAE: `python -m rdcae.train [dataset=aitex fabric=03 lambda=1.6 ...]`.

Compose (Hydra) → patches and synthetic defects (DataModule) → alternation of Adam blocks
and S-updates (Alternation callback) until the train AUC target → test on held-out normals
and real defects → metrics.json, exported model, figures, TensorBoard.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torchmetrics.functional.classification import binary_auroc, binary_roc

from rdcae import figures
from rdcae.baselines import run_baselines
from rdcae.config import ConfigError, validate
from rdcae.data.datamodule import DefectDataModule
from rdcae.detect import export
from rdcae.model.alternation import Alternation
from rdcae.model.network import AUTO
from rdcae.model.robust import RobustAutoencoder, as_probability


def build(cfg: DictConfig, output_dir: Path):
    """The DataModule, the module, the alternation and the trainer of one run."""
    noise = instantiate(cfg.noise)
    datamodule = DefectDataModule(cfg, noise, batch_size=int(cfg.model.batch_size))
    datamodule.setup("fit")
    if cfg.model.get("score") == AUTO and not len(datamodule.validation_x):
        warnings.warn("model.score=auto has no held-out synthetic defects to choose by (dataset.n_calibration=0 or noise=none): "
                      "the run scores with norm, the paper's ‖x − x̂‖₂", stacklevel=2)
    module = RobustAutoencoder.from_config(cfg, datamodule.train_x)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    alternation = Alternation(**cfg.alternation)
    checkpoints = ModelCheckpoint(
        dirpath=output_dir / "checkpoints", filename="epoch{epoch:03d}", every_n_epochs=alternation.block_epochs,
        save_top_k=1, monitor=None, save_last=True, auto_insert_metric_name=False,
    )
    logger = TensorBoardLogger(save_dir=str(output_dir), name="tensorboard", version="", default_hp_metric=False)
    trainer = instantiate(
        cfg.trainer, max_epochs=alternation.max_epochs, callbacks=[alternation, checkpoints], logger=logger,
        default_root_dir=str(output_dir),
    )
    return datamodule, module, alternation, trainer


def run(cfg: DictConfig, output_dir: str | Path) -> dict:
    """Train, test and write everything a run leaves behind; returns the metrics dict."""
    validate(cfg)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    start = time.perf_counter()

    if cfg.get("ckpt_path"):
        check_resume(cfg, cfg.ckpt_path)
    datamodule, module, alternation, trainer = build(cfg, output_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    device = str(trainer.strategy.root_device)  # Lightning moves the module back to the CPU after fit
    if trainer.interrupted:
        raise SystemExit(f"training interrupted; resume with ckpt_path={trainer.checkpoint_callback.last_model_path or '<no checkpoint yet>'}")
    fit_seconds = time.perf_counter() - start
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    module.to(trainer.strategy.root_device)
    test_scores = module.test_scores

    metrics = {
        "test": {k.removeprefix("test/"): float(v) for k, v in test.items()},
        "threshold": float(module.threshold),
        "threshold_from": f"{len(datamodule.calibration_x)} calibration patches" if len(datamodule.calibration_x) else "normal training patches",
        "blocks": alternation.blocks,
        "epochs": trainer.current_epoch,
        "stop_reason": alternation.stop_reason or "stopped early",
        "train_auc": alternation.history[-1].train_auc if alternation.history else math.nan,
        "validation_auc": alternation.history[-1].validation_auc if alternation.history else math.nan,
        "score": module.score_kind,  # model.score, or the score model.score=auto chose
        "history": [vars(r) for r in alternation.history],
        "per_defect_image": per_defect_image(test_scores, datamodule, float(module.threshold)),
        "patches": datamodule.patches.stats,
        "n_train": len(datamodule.train_x),
        "n_synthetic": int(datamodule.train_synthetic.sum()),
        "fit_seconds": fit_seconds,
        "device": device,
    }
    if cfg.get("baselines"):  # Table 4: the other methods on the same patches, trained for the epochs RDCAE used
        metrics["baselines"] = run_baselines(
            cfg, datamodule, epochs=max(trainer.current_epoch, 1), methods=list(cfg.baselines), output_dir=output_dir,
            writer=trainer.logger.experiment, reference={"rdcae": test_scores},
        )
    (output_dir / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2, default=str))
    export(module, cfg, output_dir / "model.pt")
    trainer.logger.log_hyperparams(hparams(cfg), metrics={f"hparam/{k}": v for k, v in metrics["test"].items() if k in ("auc", "f1", "accuracy")})
    if cfg.get("figures", True):
        write_figures(module, datamodule, trainer.logger, output_dir, step=alternation.blocks, auc=metrics["test"].get("auc", math.nan))
    print(summary(metrics, output_dir))
    return metrics


def per_defect_image(test_scores: torch.Tensor, dm: DefectDataModule, threshold: float) -> list[dict]:
    """For each defect image: its defect tiles, how many score above the threshold, and the AUC
    of its tiles against all held-out normal patches (None without normals) — which images
    the detector misses."""
    names = dm.patches.stats.get("defect_images", [])
    source = torch.as_tensor(dm.patches.test_defect_source, dtype=torch.long)
    normal = test_scores[dm.test_y == 0]
    defect = test_scores[dm.test_y == 1]
    rows = []
    for index in torch.unique(source[source >= 0]).tolist():
        scores = defect[source == index]
        auc = None
        if len(normal):
            both = torch.cat([normal, scores])
            labels = torch.cat([torch.zeros(len(normal)), torch.ones(len(scores))]).long()
            auc = float(binary_auroc(as_probability(both), labels))
        rows.append({"image": names[index], "tiles": len(scores), "detected": int((scores > threshold).sum()), "auc": auc})
    return rows


RESUME_KEYS = ("lambda", "seed", "patch_size", "channels", "noise_ratio", "noise", "dataset", "model")


def check_resume(cfg: DictConfig, ckpt_path: str) -> None:
    """A resumed run must continue the same run: S and the split only fit the settings that made them."""
    def relevant(config: dict) -> dict:  # where the data lies may change, what it is may not
        picked = {k: config.get(k) for k in RESUME_KEYS}
        if isinstance(picked["dataset"], dict):
            picked["dataset"] = {k: v for k, v in picked["dataset"].items() if k != "data_dir"}
        return picked

    saved = torch.load(ckpt_path, map_location="cpu", weights_only=False).get("config") or {}
    if not saved:
        return
    before, now = relevant(saved), relevant(OmegaConf.to_container(cfg, resolve=True))
    changed = [k for k in RESUME_KEYS if before[k] != now[k]]
    if changed:
        raise ConfigError(
            f"ckpt_path={ckpt_path} was trained with other settings for {', '.join(changed)}; "
            "resume with the overrides of the original run (its config.yaml lists them)"
        )


def _json_safe(value):
    """NaN (e.g. the train AUC of a run without synthetic defects) as null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def hparams(cfg: DictConfig) -> dict:
    """The settings a sweep varies, flattened for TensorBoard's HPARAMS tab."""
    flat = {"lambda": cfg["lambda"], "patch_size": cfg.patch_size, "noise": cfg.noise._target_.rsplit(".", 1)[-1],
            "noise_ratio": cfg.noise_ratio, "seed": cfg.seed, "dataset": cfg.dataset.name, "robust": cfg.model.robust,
            "channels": cfg.channels, "block_epochs": cfg.alternation.block_epochs, "lr": cfg.model.lr,
            "score": str(cfg.model.get("score", "norm"))}
    if cfg.dataset.name == "aitex":
        flat["fabric"] = str(cfg.fabric)
    return flat


@torch.no_grad()
def write_figures(module: RobustAutoencoder, dm: DefectDataModule, logger: TensorBoardLogger, output_dir: Path, step: int, auc: float, k: int = 8) -> None:
    """Figure 4 (X / L / S for training and test patches), the ROC curve, score histograms and Figure 5."""
    fig_dir = output_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    writer = logger.experiment
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
    save(figures.xls_figure(train, "training patches: X = L + S"), "fig4a_train_xls")

    test_reconstruction = module.reconstruct(dm.test_x).cpu()  # one pass over each set serves every figure
    test_scores = module.score_residual(dm.test_x, test_reconstruction)
    test_pred = module.decide(test_scores.to(module.device)).cpu()
    test = {}
    for group, label in (("normal (held out)", 0), ("real defects", 1)):
        idx = (dm.test_y == label).nonzero()[:k, 0]
        if len(idx):
            x, r = dm.test_x[idx], test_reconstruction[idx]
            test[group] = {"X": x, "R = D(E(X))": r, "|X − R|": x - r}
    save(figures.xls_figure(test, "test patches: reconstruction and residual"), "fig4b_test_xr")

    if (dm.test_y == 1).any() and (dm.test_y == 0).any():
        fpr, tpr, _ = binary_roc(as_probability(test_scores), dm.test_y)
        pred = test_pred.bool()
        positive = dm.test_y == 1
        point = (float(pred[~positive].float().mean()), float(pred[positive].float().mean()))
        save(figures.roc_figure(fpr, tpr, auc, point, "test ROC: held-out normals vs real defects"), "roc_test")

    train_reconstruction = module.reconstruct(dm.train_x).cpu()
    train_scores = module.score_residual(dm.train_x, train_reconstruction)
    groups = {"train normal": train_scores[~synthetic], "train synthetic": train_scores[synthetic],
              "test normal": test_scores[dm.test_y == 0], "test real defect": test_scores[dm.test_y == 1]}
    save(figures.score_histogram(groups, float(module.threshold), "reconstruction errors" if kind == "norm" else f"anomaly scores ({kind})"), "score_histogram")
    normal, defect = dm.test_y == 0, dm.test_y == 1
    save(figures.hardest_figure(dm.test_x[normal], test_scores[normal], dm.test_x[defect], test_scores[defect], float(module.threshold),
                                f"hardest test patches: {what}, defect masks outlined",
                                defect_masks=torch.from_numpy(dm.patches.test_defect_mask)), "hardest_test_patches")

    save(figures.error_ssim_figure(
        train_errors=train_scores, train_ssim=figures.ssim_scores(dm.train_x, train_reconstruction), train_synthetic=synthetic,
        test_errors=test_scores, test_ssim=figures.ssim_scores(dm.test_x, test_reconstruction), test_y=dm.test_y,
        test_pred=test_pred, threshold=float(module.threshold),
        title="reconstruction error vs SSIM (the paper's Figure 5)" if kind == "norm" else f"{what} vs SSIM (the paper's Figure 5)"), "fig5_error_ssim")
    figures.plt.close("all")


def score_line(metrics: dict) -> str:
    """The anomaly score used, with the validation AUC of each score kind when they were compared."""
    aucs = metrics["history"][-1].get("validation_aucs", {}) if metrics.get("history") else {}
    compared = ", ".join(f"{kind} {value:.4f}" for kind, value in aucs.items())
    return f"{metrics.get('score', 'norm')}" + (f"  (validation AUC {compared})" if compared else "")


def summary(metrics: dict, output_dir: Path) -> str:
    t = metrics["test"]
    return "\n".join([
        "",
        "rdcae run finished",
        f"  blocks run      : {metrics['blocks']} ({metrics['epochs']} epochs, {metrics['fit_seconds']:.1f} s on {metrics['device']})",
        f"  stopped because : {metrics['stop_reason']}",
        f"  synthetic AUC   : {metrics['train_auc']:.4f} on the training set, {metrics.get('validation_auc', math.nan):.4f} on held-out patches with fresh defects",
        f"  score           : {score_line(metrics)}",
        f"  threshold       : {metrics['threshold']:.4f}  (quantile of the scores of {metrics.get('threshold_from', 'normal training patches')})",
        f"  test            : AUC {t.get('auc', math.nan):.4f}  F1 {t.get('f1', math.nan):.4f}  accuracy {t.get('accuracy', math.nan):.4f}"
        f"  (TP {t.get('tp', 0):.0f} FP {t.get('fp', 0):.0f} TN {t.get('tn', 0):.0f} FN {t.get('fn', 0):.0f})",
        f"  outputs         : {output_dir}",
        f"  TensorBoard     : tensorboard --logdir {output_dir / 'tensorboard'}",
        "",
    ])


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    metrics = run(cfg, HydraConfig.get().runtime.output_dir)
    return metrics["test"].get("auc", math.nan)


if __name__ == "__main__":
    main()
