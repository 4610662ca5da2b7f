"""The convolutional autoencoder of section 4.1: a LeNet-style encoder and its mirror."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvAutoencoder(nn.Module):
    """Three conv modules (5×5 conv, LeakyReLU, 2×2 max-pool) into a dense latent, and back.

    Works for any channel count and any patch size divisible by 8 (three 2× poolings).
    The decoder mirrors the encoder with nearest-neighbour upsampling and 5×5 convolutions.

    normalize: the network works on (x − mean) / std per channel, with mean and std of the
    training set held in buffers, and answers in pixel units. Raw [0, 1] fabric has a small
    spread (std ≈ 0.1), and without this the autoencoder sits at the mean patch for hundreds
    of steps. output: "linear" (with normalize) or "sigmoid" (pixels in [0, 1]).
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
        normalize: bool = True,
        output: str = "linear",
    ) -> None:
        super().__init__()
        if output not in ("linear", "sigmoid"):
            raise ValueError(f"model.output={output!r}: choose 'linear' or 'sigmoid'")
        self.normalize, self.output = normalize, output
        self.register_buffer("pixel_mean", torch.full((1, channels, 1, 1), 0.5))
        self.register_buffer("pixel_std", torch.full((1, channels, 1, 1), 0.25))
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
            if k < len(pairs) - 1:
                decoder.append(nn.LeakyReLU(negative_slope))
        if output == "sigmoid":
            decoder.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*decoder)
        # Glorot init with zero biases: PyTorch's default init (scaled for fan-in with a=√5)
        # left the 8-layer autoencoder at the mean patch for a hundred steps or more.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @torch.no_grad()
    def fit_normalization(self, x: torch.Tensor) -> None:
        """Take the per-channel mean and std of a training set (N, C, P, P)."""
        self.pixel_mean.copy_(x.mean(dim=(0, 2, 3), keepdim=True))
        self.pixel_std.copy_(x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3))

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, P, P) -> (N, latent_dim)
        return self.encoder((x - self.pixel_mean) / self.pixel_std if self.normalize else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, P, P) -> (N, C, P, P)
        y = self.decoder(self.encode(x))
        # A linear head answers in the units the encoder saw; a sigmoid head in [0, 1] pixels.
        return y * self.pixel_std + self.pixel_mean if self.normalize and self.output == "linear" else y


def chunk_size_for(device: torch.device) -> int:
    """Patches per forward pass when scoring a whole set: CPU caches favour ~1k patches (16k would
    also need ~6 GiB of activations); a GPU wants big batches."""
    return 16384 if device.type == "cuda" else 1024


@torch.no_grad()
def map_in_chunks(fn, x: torch.Tensor, device: torch.device, chunk_size: int, channels_last: bool = True) -> torch.Tensor:
    """fn over a whole set x (N, C, P, P), `chunk_size` patches at a time on `device`, each chunk in
    the network's memory layout; the results concatenated along the first axis."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.cat([fn(chunk.to(device).contiguous(memory_format=layout)) for chunk in x.split(chunk_size)] or [fn(x.to(device))])


def reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The score of a patch: ‖x − D(E(x))‖₂ over all its pixels and channels. (N,) from (N, C, P, P)."""
    return (x - x_hat).flatten(1).norm(dim=1)


SCORES = ("norm", "strip")
AUTO = "auto"  # model.score=auto: the score of SCORES that ranks held-out synthetic defects best (RobustAutoencoder.choose_score)


def check_score(kind: str, width, patch_size: int, choices: tuple[str, ...] = SCORES) -> None:
    """Raise ValueError naming model.score / model.score_width when they cannot score a P×P patch."""
    if kind not in choices:
        raise ValueError(f"model.score={kind!r}: choose one of {', '.join(choices)} (norm: ‖x − x̂‖₂ over the patch, the paper's score)")
    if not (isinstance(width, int) and not isinstance(width, bool) and 1 <= width <= patch_size):
        raise ValueError(f"model.score_width={width!r} must be an integer between 1 and patch_size={patch_size} (the rows or columns of a strip)")


def anomaly_score(x: torch.Tensor, x_hat: torch.Tensor, kind: str = "norm", width: int = 4) -> torch.Tensor:
    """The anomaly score of each patch from its residual r = x − x̂. (N,) from (N, C, P, P).

    norm   ‖r‖₂ over the whole patch (the paper's score, `reconstruction_error`).
    strip  ‖r‖₂ over the patch's worst strip: `width` consecutive rows or `width` consecutive
           columns, all channels. A thin defect along the weft or the warp (a broken pick, a
           broken end) puts its whole residual in one strip, where the patch-wide norm adds the
           texture residual of every other pixel to it. Always ≤ norm; equal when width = P.
    """
    check_score(kind, width, x.shape[-1])
    if kind == "norm":
        return reconstruction_error(x, x_hat)
    energy = (x - x_hat).float().pow(2).sum(1)  # (N, P, P)
    lines = torch.stack([energy.sum(2), energy.sum(1)], 1)  # (N, 2, P): energy per row, per column
    strips = F.avg_pool1d(lines, width, stride=1) * width  # energy of every run of `width` rows / columns
    return strips.flatten(1).amax(1).sqrt()
