"""The DataModule: normal + synthetic-defect patches for training, held-out normal + real defects for test."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rdcae.data.patches import PatchSet, prepare_patches, to_channels
from rdcae.noise import decorate


@dataclass
class PatchBatch:
    """x: (B, C, P, P) float in [0, 1]; index: (B,) position in its set; label: (B,) 1 = defect."""

    x: torch.Tensor
    index: torch.Tensor
    label: torch.Tensor


class Patches(Dataset):
    """Patches indexed by whole batches of indices (no per-sample collation)."""

    def __init__(self, x: torch.Tensor, label: torch.Tensor) -> None:
        self.x, self.label = x, label

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index) -> PatchBatch:
        index = torch.as_tensor(index)
        return PatchBatch(self.x[index], index, self.label[index])


class EpochBatches(Sampler):
    """Shuffled batches whose order depends only on (seed, epoch), so a resumed run sees the same batches."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.batch_size, self.seed, self.shuffle, self.epoch = n, batch_size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(self.n)
        yield from order.split(self.batch_size)


def to_float(x: np.ndarray, channels: int) -> torch.Tensor:
    """uint8 (N, C, P, P) patches to float32 in [0, 1] with the requested channel count."""
    return torch.from_numpy(to_channels(x, channels)).float().div_(255)


class DefectDataModule(L.LightningDataModule):
    """Builds the training set X (normals, `noise_ratio` % of them decorated) and the test set.

    After `setup()`:
      train_x (N, C, P, P), train_synthetic (N,) bool — which training samples carry synthetic defects;
      test_x (M, C, P, P), test_y (M,) — 0 held-out normal, 1 real defect.
    """

    def __init__(self, cfg, noise, batch_size: int = 128, test_batch_size: int = 1024) -> None:
        super().__init__()
        self.cfg, self.noise = cfg, noise
        self.batch_size, self.test_batch_size = batch_size, test_batch_size
        self.patches: PatchSet | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.patches is not None:
            return
        cfg = self.cfg
        self.patches = prepare_patches(cfg)
        channels = int(cfg.channels)
        normals = to_float(self.patches.train_normal, channels)
        generator = torch.Generator().manual_seed(int(cfg.seed))
        self.train_x, self.train_synthetic = decorate(normals, float(cfg.noise_ratio), self.noise, generator)
        test_normal = to_float(self.patches.test_normal, channels)
        test_defect = to_float(self.patches.test_defect, channels)
        self.test_x = torch.cat([test_normal, test_defect])
        self.test_y = torch.cat([torch.zeros(len(test_normal)), torch.ones(len(test_defect))]).long()

    def train_dataloader(self) -> DataLoader:
        sampler = EpochBatches(len(self.train_x), self.batch_size, int(self.cfg.seed))
        return DataLoader(Patches(self.train_x, self.train_synthetic.long()), sampler=sampler, batch_size=None)

    def test_dataloader(self) -> DataLoader:
        sampler = EpochBatches(len(self.test_x), self.test_batch_size, 0, shuffle=False)
        return DataLoader(Patches(self.test_x, self.test_y), sampler=sampler, batch_size=None)
