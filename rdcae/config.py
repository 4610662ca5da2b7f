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
from rdcae.data.patches import check_patch_settings
from rdcae.errors import ConfigError
from rdcae.metrics.threshold import check_false_alarms
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
    require(cfg.channels in (1, 3), f"channels={cfg.channels} must be 1 (gray) or 3 (gray replicated / RGB)")
    require(int(cfg.model.batch_size) > 0, f"model.batch_size={cfg.model.batch_size} must be > 0")
    require(float(cfg.model.lr) > 0, f"model.lr={cfg.model.lr} must be > 0")
    require(isinstance(cfg.seed, int), f"seed={cfg.seed} must be an integer")
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
    saved = load_checkpoint(ckpt_path).get("config") or {}
    if not saved:
        return
    before, now = _flat(saved), _flat(OmegaConf.to_container(cfg, resolve=True))
    changed = [k for k in sorted(set(before) | set(now))
               if before.get(k, "<unset>") != now.get(k, "<unset>")
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


CONF = Path(__file__).resolve().parents[1] / "conf"
_ABSENT = object()
SET_BY_RDCAE = {  # Trainer arguments the run sets itself, and what to set instead
    "trainer.max_epochs": "the epochs are alternation.block_epochs × alternation.max_blocks; set those",
    "trainer.callbacks": "the run sets the callbacks itself (the alternation and the checkpoints)",
    "trainer.logger": "the run logs to TensorBoard in its folder itself",
    "trainer.default_root_dir": "the run's folder is Hydra's: set hydra.run.dir (or hydra.sweep.dir with -m)",
    "trainer.plugins": "the run sets its checkpoint plugin itself",
}


def check_overrides(overrides: list[str], command: str = "python -m rdcae.train") -> None:
    """Refuses, in one line that names it, a command-line setting the training config does not have: a
    misspelt key (model.scor=), a `+key=` that adds one nothing reads, a config group option that does
    not exist (dataset=aitx), or a line Hydra cannot read. Values are `validate`'s to check; hydra.* and
    hydra/* settings are Hydra's own. Sweeps (seed=0,1,2) are checked value by value for groups."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        detail = str(error).strip().splitlines()[0]
        raise ConfigError(f"{' '.join(overrides)}: a setting that cannot be read ({detail}); write key=value, "
                          f"e.g. seed=1 or 'seed=0,1,2' with -m") from None
    groups = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in CONF.iterdir() if p.is_dir()}
    chosen = []
    for override in parsed:
        key = override.key_or_group
        if key.split(".")[0].split("/")[0] == "hydra" or override.is_delete():
            continue
        if key in groups:
            value = override.value()
            options = ([] if isinstance(value, Glob) else list(override.sweep_string_iterator())
                       if override.is_sweep_override() else [str(value)])
            for option in options:
                if option not in groups[key] and option != "null":
                    close = difflib.get_close_matches(option, groups[key], n=1)
                    hint = f"did you mean {key}={close[0]}? " if close else ""
                    raise ConfigError(f"{key}={option}: no such {key}; {hint}choose one of {', '.join(groups[key])}")
            if options:
                chosen.append(f"{'+' if override.is_add() else ''}{key}={options[0]}")
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", overrides=chosen)
    except HydraException as error:
        raise ConfigError(f"{' '.join(chosen)}: {str(error).strip().splitlines()[0]}") from None
    for override in parsed:
        key = override.key_or_group
        if key.split(".")[0].split("/")[0] == "hydra" or override.is_delete() or key in groups:
            continue
        if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT:
            continue
        if key in SET_BY_RDCAE:
            raise ConfigError(f"{override.input_line}: {SET_BY_RDCAE[key]}")
        if key.startswith("trainer.") and override.is_add() and key.count(".") == 1:
            import inspect

            from lightning import Trainer

            if key[len("trainer."):] in inspect.signature(Trainer).parameters:
                continue  # another argument of Lightning's Trainer, passed on as it is
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{override.input_line}: unknown setting; {parent} has no settings inside it")
        known = sorted({str(k) for k in node} | (set() if parent else set(groups)))
        close = difflib.get_close_matches(leaf, known, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}=? " if close else ""
        where = f"{parent} has" if parent else f"{command} takes"
        shown = ", ".join(known) if len(known) <= 12 else ", ".join(known[:12]) + ", ..."
        raise ConfigError(f"{override.input_line}: unknown setting; {hint}{where} {shown}"
                          + (" (see --help)" if not parent else ""))
