"""Thin weft and warp lines: a synthetic family for yarn faults that Julia blobs do not imitate.

A line is a band of 1–4 rows (weft) or columns (warp) across part or all of the patch, shifted
darker or brighter by a few standard deviations of the patch. The shift is added, so the
weave stays visible through the line, as in a wrong or missing yarn (AITEX fabric 00's `_022_`
defect: a line 3–4 pixels high, 0.6 std darker than the weave around it).

With `gain`, a line changes the weave's contrast instead: the band's deviation from its own mean
is multiplied by g or 1/g, so its yarns stand out more or less than their neighbours without the
band's mean moving, as in a thick or thin place, or yarns of another lot (a weft bar).
"""

from __future__ import annotations

import torch

ORIENTATIONS = ("horizontal", "vertical")


class LineNoise:
    """`width` and `length` (a fraction of the patch side) are drawn uniformly from their ranges;
    the shift is ± `contrast` × the patch's std (per channel, floored at 0.05 like `JuliaNoise`)."""

    def __init__(
        self,
        width: tuple[int, int] = (1, 4),
        length: tuple[float, float] = (0.5, 1.0),
        contrast: tuple[float, float] = (1.0, 3.0),
        orientations: tuple[str, ...] = ORIENTATIONS,
        gain: tuple[float, float] | None = None,
        gain_share: float = 0.5,
        name: str = "lines",
    ) -> None:
        self.name = name
        unknown = set(orientations) - set(ORIENTATIONS)
        if unknown or not orientations:
            raise ValueError(f"noise.orientations: unknown or empty {sorted(unknown) or list(orientations)}; "
                             f"choose from {ORIENTATIONS}")
        if not 1 <= width[0] <= width[1]:
            raise ValueError(f"noise.width must satisfy 1 <= low <= high (pixels), got {tuple(width)}")
        if not 0 < length[0] <= length[1] <= 1:
            raise ValueError(f"noise.length must satisfy 0 < low <= high <= 1 (fraction of the patch), "
                             f"got {tuple(length)}")
        if not 0 < contrast[0] <= contrast[1]:
            raise ValueError(f"noise.contrast must satisfy 0 < low <= high (patch stds), got {tuple(contrast)}")
        if gain is not None and not 1 < gain[0] <= gain[1]:
            raise ValueError(f"noise.gain must satisfy 1 < low <= high (contrast factor), got {tuple(gain)}")
        if not 0 <= gain_share <= 1:
            raise ValueError(f"noise.gain_share must be in [0, 1], got {gain_share}")
        self.width, self.length, self.contrast = tuple(width), tuple(length), tuple(contrast)
        self.gain, self.gain_share = (tuple(gain) if gain is not None else None), float(gain_share)
        self.orientations = tuple(orientations)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=generator)  # noqa: E731
        vertical = torch.tensor([self.orientations[k] == "vertical"
                                 for k in torch.randint(len(self.orientations), (n,), generator=generator).tolist()])
        across_size = torch.where(vertical, w, h)  # (N,) the side the line's width is measured on
        along_size = torch.where(vertical, h, w)
        width = torch.randint(self.width[0], self.width[1] + 1, (n,), generator=generator).minimum(across_size)
        length = (u(*self.length) * along_size).round().long().clamp(1)
        first = (torch.rand(n, generator=generator) * (across_size - width + 1)).long()
        start = (torch.rand(n, generator=generator) * (along_size - length + 1)).long()

        rows = torch.arange(h).view(1, h, 1).expand(n, h, w)
        cols = torch.arange(w).view(1, 1, w).expand(n, h, w)
        across = torch.where(vertical.view(n, 1, 1), cols, rows)  # (N, h, w)
        along = torch.where(vertical.view(n, 1, 1), rows, cols)
        v = lambda t: t.view(n, 1, 1)  # noqa: E731
        mask = (across >= v(first)) & (across < v(first + width)) & (along >= v(start)) & (along < v(start + length))

        sign = torch.where(torch.rand(n, 1, 1, 1, generator=generator) < 0.5, -1.0, 1.0)
        k = u(*self.contrast).view(n, 1, 1, 1)
        std = x.std(dim=(2, 3), keepdim=True).clamp_min(0.05)
        band = mask.unsqueeze(1).to(x)
        decorated = x + band * (sign * k).to(x) * std
        if self.gain is not None:  # a share of the lines scale the band's contrast instead
            g = u(*self.gain).view(n, 1, 1, 1).to(x)
            g = torch.where(sign > 0, g, 1 / g)
            mean = (x * band).sum((2, 3), keepdim=True) / band.sum((2, 3), keepdim=True)
            scaled = x + band * (g - 1) * (x - mean)
            chosen = (torch.rand(n, 1, 1, 1, generator=generator) < self.gain_share).to(x)
            decorated = chosen * scaled + (1 - chosen) * decorated
        return decorated.clamp(0, 1), mask

    def __repr__(self) -> str:
        gain = f", gain={self.gain}, gain_share={self.gain_share}" if self.gain is not None else ""
        return f"LineNoise(width={self.width}, length={self.length}, contrast={self.contrast}{gain})"
