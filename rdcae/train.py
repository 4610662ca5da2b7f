"""Train and test one RDCAE: `python -m rdcae.train [dataset=aitex fabric=03 lambda=1.6 ...]`.

Check the command line (rdcae.overrides) → compose (Hydra) → the run (rdcae.fit: train, test, write what a
run leaves) → the test AUC, the metric a sweeper optimises. Light to import until the run starts, so that
--help and a misspelt setting answer before Lightning loads; `from rdcae.train import run, build` still
gives rdcae.fit's.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rdcae.errors import ConfigError, DataError
from rdcae.overrides import check_command_line

NOTHING_YET = {".hydra", "train.log", "config.yaml"}  # what a run folder holds before training starts


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    from rdcae.fit import run  # Lightning and the rest of the training stack, once the settings were read

    lightning_once_on_the_console()
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = run(cfg, output_dir)
    except (ConfigError, DataError, FileNotFoundError) as error:  # bad settings or data: one line, no traceback
        if set(p.name for p in output_dir.iterdir()) <= NOTHING_YET:  # refused before any work: leave no folder
            shutil.rmtree(output_dir)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return metrics["test"].get("auc", math.nan)


class _NotLightning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "lightning" or record.name.startswith("lightning."))


def lightning_once_on_the_console() -> None:
    """Lightning prints its messages through a console handler of its own ("INFO: ...") and passes them on to
    the root logger, whose console handler Hydra set up: each would show twice. Hydra's console handler leaves
    them to Lightning's; its log file (train.log) keeps them."""
    if not logging.getLogger("lightning").handlers:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.addFilter(_NotLightning())


def main() -> None:
    """`python -m rdcae.train`: the command-line settings checked against the config first (a misspelt
    key or group option is one line and exit code 2, as a bad value is), then Hydra's run."""
    check_command_line(sys.argv[1:], "python -m rdcae.train")
    hydra_main()


def __getattr__(name: str):
    """run, build and the rest of the run's pieces, from rdcae.fit when first asked for."""
    import rdcae.fit

    try:
        return getattr(rdcae.fit, name)
    except AttributeError:
        raise AttributeError(f"module 'rdcae.train' has no attribute {name!r}") from None


if __name__ == "__main__":
    main()
