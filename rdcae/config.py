"""The run config, checked once before any work: `validate` builds the settings objects of every
component (network spec, alternation, operating point, baselines) and refuses a bad value naming
the setting, and settles `trainer.precision=auto` for the machine it runs on; `check_resume`
refuses a checkpoint made with other settings.

λ has three spellings, each where it must: `lambda` in the config (the paper's name), `lambda_`
in Python (a keyword there), and `s_lambda` in the block record (the λ an S-update used).
"""

from __future__ import annotations

import math
import pickle
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from rdcae.baselines import check_methods
from rdcae.baselines.deep_svdd import DeepSVDDSettings
from rdcae.data.aitex import settle_fabric
from rdcae.data.lighting import LIGHTING_ON_FABRIC
from rdcae.data.patches import check_patch_settings
from rdcae.errors import ConfigError
from rdcae.metrics.operating_point import check_false_alarms
from rdcae.model.alternation import AlternationSettings
from rdcae.model.network import NetworkSpec
from rdcae.model.robust import state_digest
from rdcae.model.score import AUTO, SCORES, check_score
from rdcae.noise import noise_name
from rdcae.precision import trainer_precision


@dataclass(frozen=True)
class RunSettings:
    network: NetworkSpec
    alternation: AlternationSettings
    threshold_quantile: float  # operating_point.quantile
    baselines: tuple[str, ...]
    deep_svdd: DeepSVDDSettings | None  # only when a Deep SVDD baseline runs
    false_alarms_per_image: float = 0.01  # operating_point.false_alarms_per_image


def validate(cfg: DictConfig) -> RunSettings:
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    def build(factory, node: str, values: dict):
        known = {f.name for f in fields(factory)}
        unknown = sorted(set(values) - known)
        missing = sorted(f.name for f in fields(factory) if f.name not in values and f.default is MISSING)
        require(not unknown,
                f"{node}.{unknown[0] if unknown else ''}: unknown setting; {node} has {', '.join(sorted(known))}")
        require(not missing, f"{node}: {', '.join(missing)} missing; {node} needs {', '.join(sorted(known))}")
        try:
            return factory(**values)
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None

    with open_dict(cfg):  # settled here, so config.yaml records what ran
        cfg.trainer.precision = trainer_precision(cfg.trainer)
        settle_fabric(cfg)
    lambda_ = cfg["lambda"]
    require(isinstance(lambda_, (int, float)) and not isinstance(lambda_, bool), f"lambda={lambda_!r} must be a number")
    require(math.isfinite(float(lambda_)) and float(lambda_) > 0,
            f"lambda={cfg['lambda']} must be a finite number > 0: it weighs the ℓ2,1 norm of S (Eq. 7); "
            "the paper uses 1.6")
    require(0 <= float(cfg.noise_ratio) < 100,
            f"noise_ratio={cfg.noise_ratio} must be a percentage in [0, 100): "
            "some training patches must stay normal (the paper uses 3 or 5)")
    size = cfg.patch_size
    require(isinstance(size, int) and size > 0 and size % 8 == 0,
            f"patch_size={size} must be a positive multiple of 8 (the network pools three times), e.g. 32 or 64")
    require(int(cfg.model.batch_size) > 0, f"model.batch_size={cfg.model.batch_size} must be > 0")
    require(float(cfg.model.lr) > 0, f"model.lr={cfg.model.lr} must be > 0")
    require(isinstance(cfg.seed, int), f"seed={cfg.seed} must be an integer")
    average_epochs = cfg.model.get("average_epochs")
    require(average_epochs is None or (isinstance(average_epochs, (int, float)) and not isinstance(average_epochs, bool)
                                       and math.isfinite(average_epochs) and average_epochs > 0),
            f"model.average_epochs={average_epochs!r} must be a number of epochs > 0 (the reach of the moving "
            "average of the weights), or null for the weights of the last step")
    try:
        check_score(cfg.model.score, cfg.model.score_width, size, (*SCORES, AUTO))
        network = NetworkSpec.from_config(cfg)
        check_patch_settings(cfg)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    quantile = cfg.operating_point.quantile
    require(isinstance(quantile, (int, float)) and 0 < quantile < 1,
            f"operating_point.quantile={quantile!r} must be in (0, 1): "
            "the share of normal patches scored below the threshold")
    try:
        false_alarms = check_false_alarms(cfg.operating_point.get("false_alarms_per_image", 0.01))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    alternation = build(AlternationSettings, "alternation", OmegaConf.to_container(cfg.alternation, resolve=True))
    baselines = tuple(check_methods(cfg.get("baselines")))
    deep_svdd = None
    if any(m.startswith("deep_svdd") for m in baselines):  # a typo fails now, not after an hours-long RDCAE run
        deep_svdd = build(DeepSVDDSettings, "deep_svdd", OmegaConf.to_container(cfg.deep_svdd, resolve=True))
    if cfg.get("ckpt_path"):
        require(Path(cfg.ckpt_path).is_file(),
                f"ckpt_path={cfg.ckpt_path} does not exist; point it at a run's checkpoints/last.ckpt")
    return RunSettings(network, alternation, float(quantile), baselines, deep_svdd, false_alarms)


def upgrade(cfg: DictConfig) -> DictConfig:
    """A run folder's config.yaml written by an earlier rdcae, in today's layout: the threshold's
    quantile was alternation.threshold_quantile, noise nodes had no name, the embedded dataset was
    called synthetic."""
    cfg = cfg.copy()
    with open_dict(cfg):
        if "operating_point" not in cfg:
            cfg.operating_point = {"quantile": cfg.alternation.get("threshold_quantile", 0.999)}
        cfg.alternation.pop("threshold_quantile", None)
        if "name" not in cfg.noise:
            cfg.noise.name = noise_name(cfg.noise)
        if cfg.dataset.name == "synthetic":
            cfg.dataset.name = "woven"
    return cfg


# What a resumed run may change: where things are and what is shown, which cannot change the result;
# and alternation.max_blocks, which lets a run go on (a resumed run with a larger max_blocks ends as an
# uninterrupted run with it does). Every other setting, present or added later, must stay as it was.
RESUME_MAY_CHANGE = ("ckpt_path", "figures", "data_dir", "cache_dir", "dataset.data_dir", "alternation.max_blocks",
                     "operating_point.false_alarms_per_image",
                     "baselines", "deep_svdd.", "trainer.enable_progress_bar", "trainer.enable_model_summary",
                     "trainer.log_every_n_steps")


def load_checkpoint(path: str | Path) -> dict:
    """A training checkpoint, read without running anything it holds (weights_only=True: tensors and
    plain containers only); a crafted or damaged file is refused, naming it."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # objects to build by running code, or bytes that are no pickle at all
        raise ConfigError(f"ckpt_path={path}: not a safe rdcae checkpoint: it holds more than tensors and plain "
                          "containers (Python objects that loading would have to run, or damaged bytes), so it was "
                          f"refused and nothing in it ran{_earlier(path)}") from None
    except Exception as error:  # truncated, zero bytes, a zip that is not one
        raise ConfigError(f"ckpt_path={path}: the checkpoint is damaged or not a checkpoint "
                          f"({type(error).__name__}){_earlier(path)}") from None
    if isinstance(checkpoint, dict) and str(checkpoint.get("format", "")).startswith("rdcae-detector/"):
        last = path.resolve().parent / "checkpoints" / "last.ckpt"
        raise ConfigError(f"ckpt_path={path}: the run's exported detector, not a training checkpoint; resume from "
                          + (str(last) if last.is_file() else "the run folder's checkpoints/last.ckpt"))
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt_path={path}: not an rdcae training checkpoint (no state_dict)")
    if checkpoint.get("state_digest") not in (None, state_digest(checkpoint["state_dict"])):
        raise ConfigError(f"ckpt_path={path}: the checkpoint is damaged: its weights or S differ from what was "
                          f"saved{_earlier(path)}")
    return checkpoint


def _earlier(path: Path) -> str:
    earlier = sorted(p for p in path.parent.glob("epoch*.ckpt") if p != path)
    return f"; resume from {earlier[-1]} beside it instead" if earlier else ""


def check_resume(cfg: DictConfig, ckpt_path: str) -> None:
    """A resumed run must continue the same run: S, the split and the schedule only fit the settings
    that made them, so every setting but RESUME_MAY_CHANGE must be as the checkpoint's config has it."""
    saved = dict(load_checkpoint(ckpt_path).get("config") or {})
    if not saved:
        return
    lighting = str((saved.get("dataset") or {}).get("lighting", "none"))
    if saved.pop(LIGHTING_ON_FABRIC, None) is None and lighting != "none":
        raise ConfigError(f"ckpt_path={ckpt_path} was trained by an earlier rdcae, which measured dataset.lighting="
                          f"{lighting} over the whole image, where this one measures it on the fabric alone; its "
                          "patches would change under it, so start the run afresh (without ckpt_path=)")
    before, now = _flat(saved), _flat(OmegaConf.to_container(cfg, resolve=True))
    changed = [k for k in sorted(set(before) | set(now))
               if before.get(k, "<unset>") != now.get(k, "<unset>")
               and not (k not in before and now[k] is None)  # a setting added since, whose null trains as before
               and not any(k == allowed or (allowed.endswith(".") and k.startswith(allowed))
                           for allowed in RESUME_MAY_CHANGE)]
    if changed:
        shown = ", ".join(f"{k}={now.get(k, '<unset>')} (trained with {before.get(k, '<unset>')})" for k in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise ConfigError(
            f"ckpt_path={ckpt_path} was trained with other settings: {shown}{more}; resume with the overrides of the "
            "original run (its config.yaml lists them)"
        )


def _flat(config: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}; lists stay values."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
