"""Other anomaly scores on trained runs, judged by held-out synthetic defects and by the real test.

    python benchmarks/score_variants.py [--noise lines ...] outputs/multirun/<sweep> [more run or sweep folders]

For every run folder (config.yaml + model.pt) it rebuilds the run's patches (from the cache),
with the held-out synthetic defects a run validates on (the calibration patches decorated
afresh by the run's noise model, `DefectDataModule.validation_x`), and reports for each score:

  syn   AUC of the held-out synthetic defects against the clean calibration patches (normal
        patches and synthetic defects only: a number a user can compute without one real
        defect; for the norm it is the run's validation_auc);
  recall  the share of those synthetic defects above the run's threshold rule (below) for this score;
  syn:<name>  the same with the calibration patches decorated by conf/noise/<name>.yaml instead
        of the run's own noise model (--noise <name>, repeatable; same random stream);
  real  AUC of the real defect tiles against the held-out normal test patches;
  F1    on the test set at the run's threshold rule applied to this score (the
        operating_point.quantile of the scores of all calibration patches).

Scores, all on the residual r = x − D(E(x)) of the exported network:
  norm      ‖r‖₂ over the patch (the paper's score, model.score=norm);
  strip<w>  ‖r‖₂ over the worst run of w rows or w columns (model.score=strip, model.score_width=w);
  local8    ‖r‖₂ over the worst 8×8 window.
  profile<w>  the residual averaged along each row (and each column), ‖·‖₂ over the worst run of w
            rows or w columns: a matched filter for faint lines that cross the whole patch, where
            the texture's residual averages out and the line's shift does not.
  strip4|profile4  the larger of strip4 and profile4, each divided by the 99 % quantile of its
            scores on the calibration patches (normal data only).
  norm/pos, strip4/pos  the residual energy of each pixel divided by its mean at that place of the
            window over the calibration patches, then the norm or strip4: a window's border, where
            the weave's error is highest, counts as much as its centre;
  strip4/std  the same divided by the energy's standard deviation at that place;
  strip4+rot180  strip4 of the energy averaged over the window and the window turned by 180°
            (each residual turned back); strip4+flips: over the window flipped both ways too.

Prints one line per run and a Markdown table of mean ± std over the runs of each setting (the
sweep's overrides except the seed); writes score_variants.json beside each sweep's runs.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rdcae.config import upgrade
from rdcae.data.datamodule import VALIDATION_STREAM
from rdcae.inference import load_detector
from rdcae.metrics.classification import auc
from rdcae.metrics.threshold import QuantileThreshold
from rdcae.model.score import anomaly_score, energy_score, worst_run
from rdcae.noise import decorate
from rdcae.paper.report import find_run_folders, read_overrides, summarize
from rdcae.train import build


def strip(width: int):
    return lambda r: anomaly_score(r, torch.zeros_like(r), "strip", width)


def local(k: int):
    def score(r: torch.Tensor) -> torch.Tensor:
        return (F.avg_pool2d(r.pow(2).sum(1, keepdim=True), k, stride=1) * k * k).flatten(1).amax(1).sqrt()
    return score


def profile(width: int):
    def score(r: torch.Tensor) -> torch.Tensor:
        # energy of the mean residual of each row and each column, in the units of the strip's energy
        return worst_run(torch.stack([r.mean(3).pow(2).sum(1), r.mean(2).pow(2).sum(1)], 1) * r.shape[-1], width)
    return score


SCORES = {"norm": lambda r: anomaly_score(r, torch.zeros_like(r)), "strip2": strip(2), "strip4": strip(4),
          "strip8": strip(8), "local8": local(8), "profile2": profile(2), "profile4": profile(4),
          "profile8": profile(8)}

# the run's score of the residual energy divided, pixel by pixel, by its mean at that place of the window
# over the calibration patches (normal data only): the weave's error at a window's border counts as much
# as its error at the centre
POSITIONAL = {"norm/pos": "norm", "strip4/pos": "strip"}

# the larger of two scores, each divided by the 99 % quantile of its calibration scores
COMBINED = {"strip4|profile4": ("strip4", "profile4")}


def noise_model(name: str):
    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base=None):
        return instantiate(compose("train", overrides=[f"noise={name}"]).noise)


def evaluate(folder: Path, extra_noise: dict) -> dict:
    cfg = upgrade(OmegaConf.load(folder / "config.yaml"))
    with tempfile.TemporaryDirectory() as scratch:
        dm, _, _, _ = build(cfg, Path(scratch))
        dm.setup()
    if len(dm.calibration_x) < 20:
        raise SystemExit(f"{folder}: needs calibration patches (dataset.n_calibration ≥ 20) "
                         "for the held-out synthetic set")
    net = load_detector(folder / "model.pt").net.eval()

    @torch.no_grad()
    def residual(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([c - net(c.contiguous(memory_format=torch.channels_last)).float() for c in x.split(512)])

    calibration, synthetic, test = residual(dm.calibration_x), residual(dm.validation_x), residual(dm.test_x)

    @torch.no_grad()
    def turned(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """The residual of x flipped on `dims`, flipped back."""
        return residual(x.flip(dims)).flip(dims)

    tta = {}
    for key, x in (("calibration", dm.calibration_x), ("synthetic", dm.validation_x), ("test", dm.test_x)):
        r0 = {"calibration": calibration, "synthetic": synthetic, "test": test}[key]
        e0 = r0.pow(2).sum(1)
        e180 = turned(x, (2, 3)).pow(2).sum(1)
        eh, ev = turned(x, (3,)).pow(2).sum(1), turned(x, (2,)).pow(2).sum(1)
        tta[key] = {"strip4+rot180": (e0 + e180) / 2, "strip4+flips": (e0 + e180 + eh + ev) / 4}
    others = {}
    for name, noise in extra_noise.items():
        decorated, changed = decorate(dm.calibration_x, 100.0, noise,
                                      torch.Generator().manual_seed(VALIDATION_STREAM + int(cfg.seed)))
        others[name] = residual(decorated[changed])
    labels = dm.test_y.bool()
    sets = {"calibration": calibration, "synthetic": synthetic, "test": test, **others}
    scored = {name: {key: fn(r) for key, r in sets.items()} for name, fn in SCORES.items()}
    for name in ("strip4+rot180", "strip4+flips"):
        scored[name] = {key: energy_score(tta[key][name], "strip", 4) for key in ("calibration", "synthetic", "test")}
    mean_energy = sets["calibration"].pow(2).sum(1).mean(0).clamp_min(1e-12)  # (P, P)
    ring = torch.ones_like(mean_energy, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    centre = mean_energy[8:-8, 8:-8]
    print(f"{folder}: the calibration patches' mean residual energy at the outer rows and columns is "
          f"{float(mean_energy[ring].mean() / centre.mean()):.2f} times that of the central "
          f"{len(centre)}×{len(centre)}")
    for name, kind in POSITIONAL.items():
        scored[name] = {key: energy_score(r.pow(2).sum(1) / mean_energy, kind, 4) for key, r in sets.items()}
    std_energy = sets["calibration"].pow(2).sum(1).std(0).clamp_min(1e-12)
    scored["strip4/std"] = {key: energy_score(r.pow(2).sum(1) / std_energy, "strip", 4) for key, r in sets.items()}
    for name, (a, b) in COMBINED.items():  # each in units of its calibration scores' 99 % quantile
        qa, qb = scored[a]["calibration"].quantile(0.99), scored[b]["calibration"].quantile(0.99)
        scored[name] = {key: torch.maximum(scored[a][key] / qa, scored[b][key] / qb) for key in sets}
    out = {}
    for name, by_set in scored.items():
        scores = by_set["test"]
        quantile = QuantileThreshold(float(cfg.operating_point.quantile))
        quantile.update(by_set["calibration"])
        threshold = quantile.compute()
        flagged = scores > threshold
        tp, fp = int((flagged & labels).sum()), int((flagged & ~labels).sum())
        f1 = 2 * tp / (2 * tp + fp + int((~flagged & labels).sum()))
        out[name] = {"syn": auc(by_set["calibration"], by_set["synthetic"]),
                     "recall": float((by_set["synthetic"] > threshold).float().mean()),
                     "real": auc(scores[~labels], scores[labels]), "f1": f1}
        out[name].update({f"syn:{other}": auc(by_set["calibration"], by_set[other]) for other in others})
    return out


def main(argv: list[str]) -> None:
    extra = []
    while argv[:1] == ["--noise"] and len(argv) > 1:
        extra.append(argv[1])
        argv = argv[2:]
    if not argv:
        raise SystemExit(__doc__)
    extra_noise = {name: noise_model(name) for name in extra}
    kinds = ("syn", "recall", *(f"syn:{name}" for name in extra), "real", "f1")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for root in map(Path, argv):
        results = {}
        for folder in find_run_folders(root):
            if not (folder / "model.pt").is_file():
                continue
            setting = tuple(sorted((k, v) for k, v in read_overrides(folder).items() if k != "seed"))
            results[str(folder)] = evaluate(folder, extra_noise)
            groups[setting].append(results[str(folder)])
            print(folder, " ".join(f"{n} " + " ".join(f"{k} {v[k]:.3f}" for k in kinds) + " |"
                                   for n, v in results[str(folder)].items()), flush=True)
        if root.is_dir():
            (root / "score_variants.json").write_text(json.dumps(results, indent=2))
    print()
    headers = {"syn": "syn AUC", "recall": "syn recall", "real": "real AUC", "f1": "real F1",
               **{f"syn:{n}": f"syn AUC ({n})" for n in extra}}
    print("| setting | score | " + " | ".join(headers[k] for k in kinds) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in kinds) + " |")
    values = defaultdict(set)
    for setting in groups:
        for key, value in setting:
            values[key].add(value)
    varying = {key for key, seen in values.items() if len(seen) > 1}
    for setting, runs in groups.items():
        label = ", ".join(f"{k}={v}" for k, v in setting if k in varying) or "all"
        for name in [*SCORES, *POSITIONAL, "strip4/std", "strip4+rot180", "strip4+flips", *COMBINED]:
            cells = []
            for kind in kinds:
                mean, std, _ = summarize([r[name][kind] for r in runs])
                cells.append(f"{mean:.3f} ± {std:.3f}")
            print(f"| {label} ({len(runs)} runs) | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
