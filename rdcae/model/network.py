"""The convolutional autoencoder of section 4.1: a LeNet-style encoder and its mirror, and the
spec that describes its shape, saved with the weights and rebuilt from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn


@dataclass(frozen=True)
class NetworkSpec:
    """The shape of a ConvAutoencoder: what a checkpoint, a detector file and an ONNX graph need to
    rebuild it. Built from the model config once (rdcae.config), then passed around."""

    channels: int = 3
    patch_size: int = 32
    filters: tuple[int, ...] = (32, 64, 128)
    latent_dim: int = 256
    kernel_size: int = 5
    negative_slope: float = 0.01
    bias: bool = True
    normalize: bool = True
    output: str = "linear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
        if self.output not in ("linear", "sigmoid"):
            raise ValueError(f"model.output={self.output!r}: choose 'linear' or 'sigmoid'")
        if self.patch_size % 2 ** len(self.filters):
            raise ValueError(f"patch_size={self.patch_size} must be divisible by {2 ** len(self.filters)} "
                             "(one 2x pooling per filter)")

    @classmethod
    def from_dict(cls, values: dict) -> "NetworkSpec":
        """A spec from its saved dict; keys added since the file was written keep their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_config(cls, cfg, **changes) -> "NetworkSpec":
        """The spec a run config asks for: channels and patch_size at the top level, the rest under model."""
        m = cfg.model
        return cls(**{"channels": int(cfg.channels), "patch_size": int(cfg.patch_size), "filters": tuple(m.filters),
                      "latent_dim": int(m.latent_dim), "negative_slope": float(m.negative_slope),
                      "normalize": bool(m.normalize), "output": str(m.output), **changes})

    def to_dict(self) -> dict:
        return {**asdict(self), "filters": list(self.filters)}


class Encoder(nn.Sequential):
    """The encoder's layers in their written order where a gradient may be recorded (training); elsewhere
    (scoring, detection, export) each max-pool runs before the LeakyReLU ahead of it. An activation with a
    non-negative slope never decreases, so the two give the same values, and it then runs on a quarter of
    the pixels (docs/PERFORMANCE.md). Training keeps the written order: there the max-pool chooses which
    pixel a gradient flows to, among values the activation's rounding may have made equal."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)
        layers = list(self)  # also where nn.Sequential passes one OrderedDict (a slice)
        steps, i = [], 0  # runs of layer indices, each pooled first where it may
        while i < len(layers):
            if (i + 1 < len(layers) and isinstance(layers[i], nn.LeakyReLU) and layers[i].negative_slope >= 0
                    and isinstance(layers[i + 1], nn.MaxPool2d)):
                steps.append((i + 1, i))
                i += 2
            else:
                steps.append((i,))
                i += 1
        self._pooled_first = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            return super().forward(x)
        for step in self._pooled_first:
            for i in step:
                x = self[i](x)
        return x


class Decoder(nn.Sequential):
    """The decoder's layers in their written order where a gradient may be recorded (training); elsewhere
    (scoring, detection, export) each nearest-neighbour 2× upsampling and the k×k convolution after it run
    as one convolution on the coarse grid into the four phases of the fine one, interleaved (pixel
    shuffle). A fine pixel's k×k taps fall on at most 3×3 coarse pixels (k = 5), whose weights are added
    first: the same sums up to rounding, with 9 products where there were 25, on a quarter of the
    positions (docs/PERFORMANCE.md). Training keeps the written order."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)
        layers = list(self)  # also where nn.Sequential passes one OrderedDict (a slice)
        steps, i = [], 0  # (index,): a layer as written; (index, index + 1): an upsampling and its convolution
        self._offsets = {}  # convolution index -> its taps' coarse offsets per parity (2, k, n), a constant
        while i < len(layers):
            if i + 1 < len(layers) and _fusable(layers[i], layers[i + 1]):
                steps.append((i, i + 1))
                self._offsets[i + 1] = _tap_offsets(layers[i + 1].kernel_size[0])
                i += 2
            else:
                steps.append((i,))
                i += 1
        self._steps = steps
        self._weights = {}  # convolution index -> (its parameters' identity and version, phase weights, biases)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            self._weights.clear()  # an optimizer step follows, which a fused optimizer makes without a new version
            return super().forward(x)
        for step in self._steps:
            if len(step) == 1:
                x = self[step[0]](x)
                continue
            weight, bias = self._phase_weights(step[1])
            x = nn.functional.conv2d(x.contiguous(memory_format=torch.channels_last), weight, bias,
                                     padding=self._offsets[step[1]].shape[2] // 2)
            x = nn.functional.pixel_shuffle(x, 2)
        return x

    def _phase_weights(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The phase weights and biases of convolution `index`, made again once they have changed (a training
        step, a load, a move to another device or dtype): detection and a block end score many chunks with the
        same, and an export traces them as constants."""
        conv = self[index]
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in (conv.weight, conv.bias) if p is not None)
        if self._weights.get(index, (None,))[0] != key:
            weight = _fold_taps(conv.weight.detach(), self._offsets[index].to(conv.weight))
            bias = None if conv.bias is None else conv.bias.detach()[:, None].expand(-1, 4).reshape(-1)  # o's 4 phases
            self._weights[index] = key, weight, bias
        return self._weights[index][1:]


def _fusable(upsample: nn.Module, conv: nn.Module) -> bool:
    """A nearest-neighbour 2× upsampling followed by a square, odd, 'same' convolution of stride 1."""
    return (isinstance(upsample, nn.Upsample) and upsample.mode == "nearest" and upsample.size is None
            and upsample.scale_factor in (2, 2.0, (2.0, 2.0)) and isinstance(conv, nn.Conv2d)
            and conv.kernel_size[0] == conv.kernel_size[1] and conv.kernel_size[0] % 2 == 1
            and conv.padding == (conv.kernel_size[0] // 2,) * 2 and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def _tap_offsets(k: int) -> torch.Tensor:
    """(2, k, n) 0/1: tap u ∈ [-p, p] (p = k // 2) of a fine pixel at parity a reads the coarse pixel at offset
    floor((a + u) / 2), one of the n = 2·ceil(p / 2) + 1 offsets around it."""
    p, half = k // 2, (k // 2 + 1) // 2
    return torch.tensor([[[float((a + u - p) // 2 + half == r) for r in range(2 * half + 1)] for u in range(k)]
                         for a in (0, 1)])


def _fold_taps(weight: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """The weights (O, I, k, k) of a 'same' convolution after a nearest 2× upsampling as one convolution on the
    coarse grid into 4·O channels (4·O, I, n, n), output channel 4o + 2a + b the fine pixels at row parity a and
    column parity b (pixel_shuffle's order): the taps on the same coarse pixel added. Sums of products with the
    0/1 `phases` (2, k, n), so that bf16 autocast leaves the weights in their own precision."""
    rows = (weight[:, :, None, :, None, :] * phases[:, :, :, None]).sum(dim=3)  # (O, I, a, r, v): rows' taps added
    both = (rows[:, :, :, :, None, None, :] * phases.transpose(1, 2)).sum(dim=-1)  # (O, I, a, r, b, c): and columns'
    n = phases.shape[2]
    return both.permute(0, 2, 4, 1, 3, 5).reshape(-1, weight.shape[1], n, n)


class ConvAutoencoder(nn.Module):
    """Three conv modules (5×5 conv, LeakyReLU, 2×2 max-pool) into a dense latent, and back.

    Works for any channel count and any patch size divisible by 8 (three 2× poolings).
    The decoder mirrors the encoder with nearest-neighbour upsampling and 5×5 convolutions.

    normalize: the network works on (x − mean) / std per channel, with mean and std of the
    training set held in buffers, and answers in pixel units. Raw [0, 1] fabric has a small
    spread (std ≈ 0.1), and without this the autoencoder sits at the mean patch for hundreds
    of steps. output: "linear" (with normalize) or "sigmoid" (pixels in [0, 1]).
    """

    def __init__(self, spec: NetworkSpec = NetworkSpec()) -> None:
        super().__init__()
        self.spec = spec
        channels, patch_size, filters, latent_dim = spec.channels, spec.patch_size, spec.filters, spec.latent_dim
        kernel_size, negative_slope, bias, output = spec.kernel_size, spec.negative_slope, spec.bias, spec.output
        self.normalize, self.output = spec.normalize, output
        self.register_buffer("pixel_mean", torch.full((1, channels, 1, 1), 0.5))
        self.register_buffer("pixel_std", torch.full((1, channels, 1, 1), 0.25))
        depth = len(filters)
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
        self.encoder = Encoder(*encoder)

        # Mirror: upsample back to each encoder resolution and undo its conv (c_out -> c_in).
        decoder: list[nn.Module] = [
            nn.Linear(latent_dim, filters[-1] * self._bottom[1] * self._bottom[2], bias=bias),
            nn.LeakyReLU(negative_slope),
            nn.Unflatten(1, self._bottom),
        ]
        pairs = list(zip((channels, *filters[:-1]), filters))  # encoder convs as (c_in, c_out)
        for k, (c_in, c_out) in enumerate(reversed(pairs)):
            decoder += [nn.Upsample(scale_factor=2, mode="nearest"),
                        nn.Conv2d(c_out, c_in, kernel_size, padding=pad, bias=bias)]
            if k < len(pairs) - 1:
                decoder.append(nn.LeakyReLU(negative_slope))
        if output == "sigmoid":
            decoder.append(nn.Sigmoid())
        self.decoder = Decoder(*decoder)
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
    """Patches per forward pass when scoring a whole set: a CPU's caches favour a few hundred patches
    (256: 1.2-1.3x the rate at 1,024 and 1.6-1.7x at 4,096, docs/PERFORMANCE.md; 16k would also need
    ~6 GiB of activations); a GPU wants big batches."""
    return 16384 if device.type == "cuda" else 256


@torch.no_grad()
def map_in_chunks(fn, x: torch.Tensor, device: torch.device, chunk_size: int,
                  channels_last: bool = True) -> torch.Tensor:
    """fn over a whole set x (N, C, P, P), `chunk_size` patches at a time on `device`, each chunk in
    the network's memory layout; the results concatenated along the first axis."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.cat([fn(chunk.to(device).contiguous(memory_format=layout)) for chunk in x.split(chunk_size)]
                     or [fn(x.to(device))])
