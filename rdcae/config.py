"""Checks on the composed configuration, made before anything is built, naming the setting."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A setting has a value the method cannot use."""


def validate(cfg: DictConfig) -> None:
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    lambda_ = cfg["lambda"]
    require(isinstance(lambda_, (int, float)) and not isinstance(lambda_, bool), f"lambda={lambda_!r} must be a number")
    require(float(lambda_) > 0, f"lambda={cfg['lambda']} must be > 0: it weighs the ℓ2,1 norm of S (Eq. 7); the paper uses 1.6")
    require(0 <= float(cfg.noise_ratio) < 100, f"noise_ratio={cfg.noise_ratio} must be a percentage in [0, 100): some training patches must stay normal (the paper uses 3 or 5)")
    size = cfg.patch_size
    require(isinstance(size, int) and size > 0 and size % 8 == 0, f"patch_size={size} must be a positive multiple of 8 (the network pools three times), e.g. 32 or 64")
    require(cfg.channels in (1, 3), f"channels={cfg.channels} must be 1 (gray) or 3 (gray replicated / RGB)")
    require(int(cfg.model.batch_size) > 0, f"model.batch_size={cfg.model.batch_size} must be > 0")
    require(float(cfg.model.lr) > 0, f"model.lr={cfg.model.lr} must be > 0")
    require(isinstance(cfg.seed, int), f"seed={cfg.seed} must be an integer")
    from rdcae.model.network import AUTO, SCORES, check_score

    try:
        check_score(cfg.model.get("score", "norm"), cfg.model.get("score_width", 4), size, (*SCORES, AUTO))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    start = cfg.alternation.get("start_fraction")
    require(start is None or 0 <= float(start) <= 1,
            f"alternation.start_fraction={start} must be in [0, 1] (the largest share of training errors above lambda at the first S-update), or null")
    held = cfg.alternation.get("s_fraction")
    require(held is None or 0 < float(held) < 1,
            f"alternation.s_fraction={held} must be in (0, 1) (the share of training samples S holds after each S-update, "
            "e.g. 0.03 for the 3 % synthetic defects), or null for the fixed lambda")
    require(int(cfg.dataset.get("n_calibration") or 0) >= 0,
            f"dataset.n_calibration={cfg.dataset.get('n_calibration')} must be >= 0 (0: the threshold comes from the normal training patches)")
    from rdcae.baselines import check_methods, deep_svdd_settings  # imports scikit-learn: only when validating

    # a typo fails now, not after an hours-long RDCAE run
    if any(m.startswith("deep_svdd") for m in check_methods(cfg.get("baselines"))):
        deep_svdd_settings(cfg)
    if cfg.get("ckpt_path"):
        require(Path(cfg.ckpt_path).is_file(), f"ckpt_path={cfg.ckpt_path} does not exist; point it at a run's checkpoints/last.ckpt")
