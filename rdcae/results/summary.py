"""The metrics of a finished run (metrics.json), the lines it prints, and its TensorBoard hparams."""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rdcae.data.images import SEEN
from rdcae.paper.report import CONTEXT
from rdcae.paper.tables import METHOD_LABELS


def run_metrics(module, datamodule, alternation, trainer, test: dict, fit_seconds: float, device: str) -> dict:
    """Everything metrics.json holds about a tested RDCAE run (`test`: the trainer's test results)."""
    from rdcae.metrics.classification import per_defect_image  # torchmetrics: not loaded where only json_safe is

    history = alternation.history
    return {
        "test": {k.removeprefix("test/"): float(v) for k, v in test.items()},
        "threshold": float(module.threshold),
        "threshold_from": alternation.threshold_from,
        "threshold_quantile": float(alternation.threshold_quantile),
        "blocks": alternation.blocks,
        "epochs": trainer.current_epoch,
        "stop_reason": alternation.stop_reason or "stopped early",
        "train_auc": history[-1].train_auc if history else math.nan,
        "validation_auc": history[-1].validation_auc if history else math.nan,
        "score": module.score_kind,  # model.score, or the score model.score=auto chose
        "history": [vars(r) for r in history],
        "per_defect_image": per_defect_image(module.test_scores, datamodule.test_y,
                                             datamodule.patches.test_defect_source,
                                             datamodule.patches.stats.get("defect_images", []),
                                             float(module.threshold)),
        "patches": {k: v for k, v in datamodule.patches.stats.items() if k != SEEN},  # not a digest per image
        "n_train": len(datamodule.train_x),
        "n_synthetic": int(datamodule.train_synthetic.sum()),
        "fit_seconds": fit_seconds,
        "device": device,
        "precision": str(trainer.precision),  # as trainer.precision=auto settled it for this machine
    }


def in_precision(precision: str | None) -> str:
    """', in fp32' for Lightning's '32-true', ', in bf16-mixed' and the like; '' where a run did not record it."""
    if not precision:
        return ""
    return f", in {'fp32' if precision in ('32', '32-true') else precision}"


def describe_operating_point(point) -> dict | None:
    """metrics.json's view of an ImageOperatingPoint: its threshold with a bootstrap interval, the
    windows per image and the number of calibration scores it comes from."""
    if point is None:
        return None
    low, high = point.interval()
    described = {"false_alarms_per_image": point.false_alarms_per_image, "windows_per_image": point.windows_per_image,
                 "threshold": point.threshold(), "threshold_interval_90": [low, high],
                 "calibration_scores": len(point.scores)}
    if point.overlap_scores is not None:
        low, high = point.interval(overlap=True)
        described["overlap"] = {"threshold": point.threshold(overlap=True), "threshold_interval_90": [low, high],
                                "calibration_scores": len(point.overlap_scores)}
    return described


def write_metrics(metrics: dict, path: Path) -> None:
    path.write_text(json.dumps(json_safe(metrics), indent=2, default=str))


def json_safe(value):
    """NaN (e.g. the train AUC of a run without synthetic defects) and infinities as null: strict JSON has
    neither. numpy's floats count as floats."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def hparams(cfg: DictConfig, overrides: list[str] = (), score: str | None = None) -> dict:
    """The settings a sweep varies, flattened for TensorBoard's HPARAMS tab: the paper's knobs, then every
    setting the command line gave (Hydra's task overrides, e.g. alternation.max_blocks) but those that say
    where or how rather than what (rdcae.paper.report.CONTEXT), with the score the run used (`score`, where
    model.score=auto chose one) rather than `auto`."""
    flat = {"lambda": cfg["lambda"], "patch_size": cfg.patch_size, "noise": cfg.noise.name,
            "noise_ratio": cfg.noise_ratio, "seed": cfg.seed, "dataset": cfg.dataset.name, "robust": cfg.model.robust,
            "channels": cfg.channels, "block_epochs": cfg.alternation.block_epochs, "lr": cfg.model.lr,
            "score": str(score or cfg.model.score)}
    if cfg.dataset.name == "aitex":
        flat["fabric"] = str(cfg.fabric)
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if key.startswith("hydra") or key in CONTEXT or key in flat or "/" in key:
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, DictConfig):  # a config group chosen (dataset=aitex, model=dcae): its name
            flat[key] = override.partition("=")[2]
        else:
            flat[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


def score_line(metrics: dict) -> str:
    """The anomaly score used, with the validation AUC of each score kind when they were compared."""
    aucs = metrics["history"][-1].get("validation_aucs", {}) if metrics.get("history") else {}
    compared = ", ".join(f"{kind} {value:.4f}" for kind, value in aucs.items())
    return f"{metrics.get('score', 'norm')}" + (f"  (validation AUC {compared})" if compared else "")


def image_lines(metrics: dict) -> list[str]:
    point = metrics.get("image_operating_point")
    if not point:
        return []
    low, high = point["threshold_interval_90"]
    overlap = point.get("overlap")
    lines = [f"  image threshold : {point['threshold']:.4f} for {point['false_alarms_per_image']:g} false alarms per "
             f"clean image of {point['windows_per_image']:.0f} windows (90 % interval {low:.4f}-{high:.4f}"
             "; rdcae.detect uses it)"]
    if overlap:
        low, high = overlap["threshold_interval_90"]
        lines.append(f"                    {overlap['threshold']:.4f} for tiles averaged over overlapping windows "
                     f"(90 % interval {low:.4f}-{high:.4f}, from {overlap['calibration_scores']} tiles; "
                     "rdcae.detect overlap=true)")
    return lines


def baseline_lines(metrics: dict) -> list[str]:
    """One line per baseline run beside RDCAE (baselines=[...]), on the same test patches."""
    lines = []
    for name, m in (metrics.get("baselines") or {}).items():
        auc = "n/a" if m.get("auc") is None else f"{m['auc']:.4f}"
        f1 = "n/a" if m.get("f1") is None else f"{m['f1']:.4f}"
        lead = "  baselines       : " if not lines else " " * 20
        lines.append(f"{lead}{METHOD_LABELS.get(name, name)}: AUC {auc}  F1 {f1}")
    return lines


WEAK_TEST_AUC = 0.75  # below it the test patches' ranking is too close to chance to act on


def quantile_phrase(metrics: dict) -> str:
    q = metrics.get("threshold_quantile")
    return "quantile" if q is None else f"the {100 * q:g} % quantile"


def weak_test_lines(test: dict, stop_reason: str = "") -> list[str]:
    """A note under a test AUC near chance (the run has not learned this surface well enough to act
    on), or without one (no defect patch to test on)."""
    auc = test.get("auc")
    if auc is None or math.isnan(auc):
        if not test or test.get("tp", 0) + test.get("fn", 0) > 0:
            return []
        return ["                    no defect patch in the test set, so no AUC, and F1 0 has nothing to find: give "
                "the dataset defect images with masks (the data warnings above name any image skipped)"]
    if auc >= WEAK_TEST_AUC:
        return []
    longer = ("train it longer (alternation.max_blocks)" if "plateau" not in stop_reason else
              "it stopped on its plateau, so more blocks will not help; try what changes what it sees "
              "(dataset.lighting, dataset.n_train)")
    return [f"                    the test patches' AUC is below {WEAK_TEST_AUC}: this model tells defects from "
            "clean patches little better than chance;",
            "                    see what it trained on (python -m rdcae.data summary with the run's dataset settings: "
            f"windows off the surface, a border taken for it?), or {longer}"]


FALSE_ALARM_EXCESS = 5  # clean test patches above the threshold this many times the share it was set for: say so


def false_alarm_lines(metrics: dict, dataset: str | None = None) -> list[str]:
    """A note where the clean test patches pass the patch threshold far more often than it was set for (the
    defect-free images may hold defects), and, for dataset=folder, where the thresholds come from the training
    images' own windows (too few clean images to spare some): a stated rate new images will exceed."""
    t, q = metrics.get("test") or {}, metrics.get("threshold_quantile")
    fp, clean = t.get("fp", 0), t.get("fp", 0) + t.get("tn", 0)
    lines = []
    if q is not None and clean and fp >= 10 and fp / clean > FALSE_ALARM_EXCESS * (1 - q):
        lines.append(f"                    {fp:.0f} of the {clean:.0f} clean test patches ({100 * fp / clean:.1f} %) "
                     f"score above the threshold, set for {100 * (1 - q):g} %: do the defect-free images hold "
                     "defects, or differ from one another? rdcae.detect on them shows where")
    if dataset == "folder" and "never trained on" not in str(metrics.get("threshold_from", "")):
        lines.append("                    the thresholds come from windows of the training images (fewer than five "
                     "defect-free images, none to spare): new images score higher, so expect more false alarms "
                     "than stated; more clean images in train/good/ give calibration images of their own")
    return lines


def summary(metrics: dict, output_dir: Path, dataset: str | None = None) -> str:
    """The run's summary as printed at its end; `dataset` (its name) adds the evaluation command where the run
    kept defect-free images out of training."""
    t = metrics["test"]
    held_out = len((metrics.get("patches") or {}).get("held_out_images") or [])
    return "\n".join([
        "",
        "rdcae run finished",
        f"  blocks run      : {metrics['blocks']} ({metrics['epochs']} epochs, "
        f"{metrics['fit_seconds']:.1f} s on {metrics['device']}{in_precision(metrics.get('precision'))})",
        f"  stopped because : {metrics['stop_reason']}",
        f"  synthetic AUC   : {metrics['train_auc']:.4f} on the training set, "
        f"{metrics.get('validation_auc', math.nan):.4f} on held-out patches with fresh defects",
        f"  score           : {score_line(metrics)}",
        f"  threshold       : {metrics['threshold']:.4f}  ({quantile_phrase(metrics)} of the scores of "
        f"{metrics.get('threshold_from', 'normal training patches')}; a patch above it is a defect)",
        *image_lines(metrics),
        f"  test patches    : AUC {t.get('auc', math.nan):.4f}  F1 {t.get('f1', math.nan):.4f}  "
        f"accuracy {t.get('accuracy', math.nan):.4f}"
        f"  (TP {t.get('tp', 0):.0f} FP {t.get('fp', 0):.0f} TN {t.get('tn', 0):.0f} FN {t.get('fn', 0):.0f})",
        *weak_test_lines(t, str(metrics.get("stop_reason", ""))),
        *false_alarm_lines(metrics, dataset),
        *baseline_lines(metrics),
        f"  outputs         : {output_dir}",
        *([f"  detector        : python -m rdcae.detect model={output_dir / 'model.pt'} input=<image, folder or glob>"]
          if (output_dir / "model.pt").is_file() else []),
        *([f"  evaluate        : python -m rdcae.detect model={output_dir / 'model.pt'} dataset={dataset}  (image "
           f"and pixel metrics on its defect images and the {held_out} defect-free image{'s' * (held_out != 1)} it "
           "never saw)"]
          if dataset and held_out and (output_dir / "model.pt").is_file() else []),
        f"  TensorBoard     : tensorboard --logdir {output_dir / 'tensorboard'}",
        "",
    ])
