"""The convolutional autoencoder of section 4.1: a LeNet-style encoder and its mirror."""

from __future__ import annotations

import torch
from torch import nn


class ConvAutoencoder(nn.Module):
    """Three conv modules (5×5 conv, LeakyReLU, 2×2 max-pool) into a dense latent, and back.

    Works for any channel count and any patch size divisible by 8 (three 2× poolings).
    The decoder mirrors the encoder with nearest-neighbour upsampling and 5×5 convolutions;
    a sigmoid output keeps reconstructions in the [0, 1] pixel range.
    """

    def __init__(
        self,
        channels: int = 3,
        patch_size: int = 32,
        filters: tuple[int, ...] = (32, 64, 128),
        latent_dim: int = 256,
        kernel_size: int = 5,
        negative_slope: float = 0.01,
        bias: bool = True,
    ) -> None:
        super().__init__()
        depth = len(filters)
        if patch_size % (2**depth):
            raise ValueError(f"patch_size={patch_size} must be divisible by {2**depth}")
        self.channels, self.patch_size, self.latent_dim = channels, patch_size, latent_dim
        self._bottom = (filters[-1], patch_size // 2**depth, patch_size // 2**depth)
        pad = kernel_size // 2

        encoder: list[nn.Module] = []
        for c_in, c_out in zip((channels, *filters[:-1]), filters):
            encoder += [
                nn.Conv2d(c_in, c_out, kernel_size, padding=pad, bias=bias),
                nn.LeakyReLU(negative_slope),
                nn.MaxPool2d(2),
            ]
        encoder += [nn.Flatten(), nn.Linear(filters[-1] * self._bottom[1] * self._bottom[2], latent_dim, bias=bias)]
        self.encoder = nn.Sequential(*encoder)

        # Mirror: upsample back to each encoder resolution and undo its conv (c_out -> c_in).
        decoder: list[nn.Module] = [
            nn.Linear(latent_dim, filters[-1] * self._bottom[1] * self._bottom[2], bias=bias),
            nn.LeakyReLU(negative_slope),
            nn.Unflatten(1, self._bottom),
        ]
        pairs = list(zip((channels, *filters[:-1]), filters))  # encoder convs as (c_in, c_out)
        for k, (c_in, c_out) in enumerate(reversed(pairs)):
            decoder += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_out, c_in, kernel_size, padding=pad, bias=bias)]
            decoder.append(nn.LeakyReLU(negative_slope) if k < len(pairs) - 1 else nn.Sigmoid())
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, P, P) -> (N, latent_dim)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, P, P) -> (N, C, P, P)
        return self.decoder(self.encoder(x))


def reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The score of a patch: ‖x − D(E(x))‖₂ over all its pixels and channels. (N,) from (N, C, P, P)."""
    return (x - x_hat).flatten(1).norm(dim=1)
