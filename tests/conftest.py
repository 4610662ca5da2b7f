"""Shared fixtures: the real Hydra config, shrunk so a whole run takes seconds on 2 CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

CONF = Path(__file__).resolve().parents[1] / "conf"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# the real AITEX sample (fabrics 00 and 03 in the original layout): beside the checkout, or where RDCAE_TEST_AITEX says
AITEX_SAMPLE = Path(os.environ.get("RDCAE_TEST_AITEX") or SHARED_DATA / "aitex")

# A tiny but complete run: short blocks, small batches, no progress bar ...
TINY_TRAINING = [
    "alternation.block_epochs=2",
    "alternation.max_blocks=2",
    "alternation.warmup_blocks=0",
    "alternation.start_fraction=null",  # a few epochs never bring the errors below λ: update S from the first block
    "model.batch_size=64",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "noise_ratio=10",
]
# ... on small synthetic images with few patches.
TINY = TINY_TRAINING + [
    "dataset.n_normal_images=2",
    "dataset.n_defect_images=3",
    "dataset.width=256",
    "dataset.height=128",
    "dataset.n_normal=200",
    "dataset.n_calibration=60",
]


def compose_config(overrides: list[str], tmp_path: Path | None = None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    if tmp_path is not None:
        with open_dict(cfg):
            cfg.cache_dir = str(tmp_path / "cache")
    return cfg


def load_checkpoint(module, path: Path) -> None:
    """A trained run's checkpoint into a freshly built module: weights, S, threshold and the score it used."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])


@pytest.fixture
def tiny_cfg(tmp_path):
    """Compose the real config with TINY overrides plus any given ones."""

    def make(*overrides: str):
        return compose_config(TINY + list(overrides), tmp_path)

    return make


@pytest.fixture
def aitex_dir() -> Path:
    if not AITEX_SAMPLE.is_dir():
        pytest.skip(f"real AITEX sample not present ({AITEX_SAMPLE}; RDCAE_TEST_AITEX= points elsewhere)")
    return AITEX_SAMPLE
