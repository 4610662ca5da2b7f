"""An exponential moving average of the network's weights, the weights every block end and the model file use.

One Adam step moves a reconstruction by more than the weave's own irregularity: scored from the weights of one
step, a normal window's error carries that step's noise. The average over the last epoch or so of steps
(torch.optim.swa_utils with an EMA) keeps what the steps agree on. Adam trains the raw weights as before; at
the end of every block the average takes their place, so that the S-update, the scores, the stop, the
thresholds, the test and the model file all see the averaged network, and the raw weights come back before
the next block trains. A checkpoint holds the averaged network as its weights and the raw ones in this
callback's state, so a resumed run trains on from where it was.

model.average_epochs sets the EMA's reach in epochs of the training set: decay = 1 − 1 / (steps per epoch ×
average_epochs); null trains as before, the weights of the last step.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_decay(steps_per_epoch: int, average_epochs: float) -> float:
    """The EMA decay whose reach (1 / (1 − decay) steps) is `average_epochs` epochs of `steps_per_epoch`."""
    return 1.0 - 1.0 / max(1.0, steps_per_epoch * average_epochs)


class AveragedWeights(L.Callback):
    """Goes before the Alternation in the trainer's callbacks: its block end must see the averaged network."""

    def __init__(self, average_epochs: float, block_epochs: int) -> None:  # rdcae.config has checked the reach
        self.average_epochs, self.block_epochs = float(average_epochs), block_epochs
        self.average: AveragedModel | None = None
        self.swapped = False  # whether the network holds the average now (and self.average the raw weights)
        self._restored: dict | None = None

    def setup(self, trainer: L.Trainer, module, stage: str) -> None:
        if stage != "fit" or self.average is not None:
            return
        steps = max(1, int(trainer.num_training_batches)) if math.isfinite(trainer.num_training_batches) else 1
        if steps == 1 and trainer.datamodule is not None:  # the loaders are not built yet at setup
            steps = len(trainer.datamodule.train_dataloader())
        self.decay = ema_decay(steps, self.average_epochs)
        self.average = AveragedModel(module.net, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=False)
        if self._restored is not None:
            self.load_state_dict(self._restored)

    def on_train_start(self, trainer: L.Trainer, module) -> None:
        self.average.to(module.device)  # built at setup, before Lightning moved the module to its device

    def on_train_epoch_start(self, trainer: L.Trainer, module) -> None:
        if self.swapped:  # the raw weights train on
            self._swap(module)

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx: int) -> None:
        self.average.update_parameters(module.net)

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        if (trainer.current_epoch + 1) % self.block_epochs == 0 and not self.swapped:
            self._swap(module)  # the block end, and whatever follows the last one, use the average

    @torch.no_grad()
    def _swap(self, module) -> None:
        for average, current in zip(self.average.module.parameters(), module.net.parameters()):
            held = average.detach().clone()
            average.copy_(current)
            current.copy_(held)
        self.swapped = not self.swapped

    def state_dict(self) -> dict:
        if self.average is None:
            return {}
        return {"average": self.average.state_dict(), "swapped": self.swapped, "decay": self.decay}

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        if self.average is None:  # restored before setup built the average: applied there
            self._restored = state_dict
            return
        self.average.load_state_dict(state_dict["average"])
        self.swapped = bool(state_dict["swapped"])
        self._restored = None
