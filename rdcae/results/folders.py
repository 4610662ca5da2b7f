"""Where a run writes: the run (or sweep) folder is made, or refused in one line, before Hydra makes it."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class WritableRunFolder(Callback):
    """A Hydra callback (conf/train.yaml, hydra.callbacks): an output folder that cannot be made is one
    line and exit code 2, not the traceback of Hydra's own mkdir."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._make(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._make(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _make(folder: str, setting: str) -> None:
        try:
            Path(str(folder)).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            print(f"error: {setting}={folder}: cannot make the output folder there ({error.strerror}); "
                  f"give {setting}= a writable place", file=sys.stderr)
            sys.exit(2)
