"""The DataModule: normal + synthetic-defect patches for training, held-out normal + real defects for test."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch

from rdcae.data.images import to_channels
from rdcae.data.patches import PatchSet, prepare_patches
from rdcae.noise.decorate import decorate

VALIDATION_STREAM = 1_000_003  # + seed: the generator of the held-out synthetic defects
VALIDATION_SIZE = 1000  # calibration patches decorated for them: enough for an AUC, cheap to score every block


@dataclass
class PatchBatch:
    """x: (B, C, P, P) float in [0, 1]; index: (B,) position in its set; label: (B,) 1 = defect;
    clean: (B, C, P, P) x before its synthetic defects (training batches with model.clean_targets), or None."""

    x: torch.Tensor
    index: torch.Tensor
    label: torch.Tensor
    clean: torch.Tensor | None = None


class DeviceBatches:
    """Shuffled batches over patches that already live on the training device.

    Only index permutations are made per epoch; each batch is a gather on the device, so
    there are no workers, no collation and no host→device copies per step. The order depends
    only on (seed, epoch), so a resumed run sees the same batches.
    """

    def __init__(self, x: torch.Tensor, label: torch.Tensor, batch_size: int, seed: int = 0, shuffle: bool = True,
                 epoch=None, clean: torch.Tensor | None = None) -> None:
        self.x, self.label, self.clean = x, label, clean  # (N, C, P, P), (N,), (N, C, P, P) or None on the device
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.epoch = epoch or (lambda: 0)  # the trainer's current epoch

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch())
            order = torch.randperm(n, generator=generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for index in order.split(self.batch_size):
            yield PatchBatch(self.x[index], index, self.label[index], None if self.clean is None else self.clean[index])


def to_float(x: np.ndarray, channels: int) -> torch.Tensor:
    """uint8 (N, C, P, P) patches to float32 in [0, 1] with the requested channel count."""
    return torch.from_numpy(to_channels(x, channels)).float().div_(255)


class DefectDataModule(L.LightningDataModule):
    """Builds the training set X (normals, `noise_ratio` % of them decorated) and the test set.

    After `setup()`:
      train_x (N, C, P, P), train_synthetic (N,) bool — which training samples carry synthetic defects;
      train_clean (N, C, P, P) — train_x before the synthetic defects;
      test_x (M, C, P, P), test_y (M,) — 0 held-out normal, 1 real defect;
      calibration_x (Q, C, P, P) — normal patches for the threshold only (Q = 0 when the
        dataset has none: the threshold then comes from the normal training patches);
      validation_normal_x (min(Q, VALIDATION_SIZE), C, P, P) — the first calibration patches, clean;
      validation_x (V, C, P, P) — the same patches with fresh synthetic defects, for the validation
        AUC against validation_normal_x (V = 0 without calibration patches or with noise=none).
    These stay on the CPU; `on_device` keeps one copy of each set on the training device,
    where the batches are cut (channels_last, the layout the convolutions run fastest in).
    """

    def __init__(self, cfg, noise, batch_size: int = 128, test_batch_size: int = 1024) -> None:
        super().__init__()
        self.cfg, self.noise = cfg, noise
        self.batch_size, self.test_batch_size = batch_size, test_batch_size
        self.patches: PatchSet | None = None
        self._resident: dict = {}

    def setup(self, stage: str | None = None) -> None:
        if self.patches is not None:
            return
        cfg = self.cfg
        self.patches = prepare_patches(cfg)
        channels = int(cfg.channels)
        normals = to_float(self.patches.train_normal, channels)
        generator = torch.Generator().manual_seed(int(cfg.seed))
        self.train_x, self.train_synthetic = decorate(normals, float(cfg.noise_ratio), self.noise, generator)
        self.train_clean = normals  # (N, C, P, P): train_x before decoration (model.clean_targets)
        test_normal = to_float(self.patches.test_normal, channels)
        test_defect = to_float(self.patches.test_defect, channels)
        self.test_x = torch.cat([test_normal, test_defect])
        self.test_y = torch.cat([torch.zeros(len(test_normal)), torch.ones(len(test_defect))]).long()
        self.calibration_x = to_float(self.patches.calibration_normal, channels)
        # Held-out synthetic defects: calibration patches decorated afresh by the run's noise
        # model, on a random stream of their own. Against the clean calibration patches they give
        # an AUC that involves no real defect and no patch the network trained on.
        self.validation_normal_x = self.calibration_x[:VALIDATION_SIZE]
        generator = torch.Generator().manual_seed(VALIDATION_STREAM + int(cfg.seed))
        decorated, changed = decorate(self.validation_normal_x, 100.0, self.noise, generator)
        self.validation_x = decorated[changed]

    def on_device(self, name: str, device: torch.device | str) -> torch.Tensor:
        """`train_x`, `train_synthetic`, `train_clean`, `test_x`, `test_y`, `calibration_x`, `validation_normal_x`
        or `validation_x` on `device`, copied there once."""
        device = torch.device(device)
        key = (name, device)
        if key not in self._resident:
            value = getattr(self, name)
            if value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
            self._resident = {k: v for k, v in self._resident.items() if k[1] == device}  # one device at a time
            self._resident[key] = value.to(device)
        return self._resident[key]

    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        if isinstance(batch, PatchBatch) and batch.x.device == device:
            return batch  # cut on the device already
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def train_dataloader(self) -> DeviceBatches:
        device = self._device()
        x, label = self.on_device("train_x", device), self.on_device("train_synthetic", device).long()
        clean = self.on_device("train_clean", device) if self.cfg.model.get("clean_targets", False) else None
        return DeviceBatches(x, label, self.batch_size, int(self.cfg.seed), epoch=self._epoch, clean=clean)

    def test_dataloader(self) -> DeviceBatches:
        device = self._device()
        x, label = self.on_device("test_x", device), self.on_device("test_y", device)
        return DeviceBatches(x, label, self.test_batch_size, shuffle=False)
