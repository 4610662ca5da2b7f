"""Julia-set defect generator (Algorithm 1), vectorised over a batch of defects.

The paper's pseudo-code has typos: its loop runs `while ... and i > max_iter` (never true
when i starts at max_iter) and updates zy before using it in zx. We use the standard
Julia iteration z ← z² + c, i.e. (zx, zy) ← (zx² − zy² + cx, 2·zx·zy + cy) computed from
the old values, looping while |z| < R and i > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

# Constants c whose Julia sets are thin, connected or dendritic: they give yarn-like strands,
# knots and holes rather than filled discs.
JULIA_CONSTANTS = (
    (-0.8, 0.156),
    (-0.7269, 0.1889),
    (0.285, 0.01),
    (-0.4, 0.6),
    (-0.835, -0.2321),
    (-0.70176, -0.3842),
    (0.355, 0.355),
    (-0.1, 0.651),
)

SHAPES = ("horizontal", "vertical", "point")


@dataclass
class JuliaParams:
    """The parameters of Algorithm 1 for a batch of B defects; each field is a (B,) tensor.

    alpha, beta: horizontal and vertical compression (small alpha → long horizontal defect);
    dx, dy: offset from the patch centre; cx, cy: the Julia constant c; zf: zoom factor.
    The image size (w, h) is passed to `julia_image`.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    dx: torch.Tensor
    dy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    zf: torch.Tensor

    def __len__(self) -> int:
        return len(self.alpha)

    def __getitem__(self, index) -> "JuliaParams":
        return JuliaParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def julia_image(params: JuliaParams, w: int, h: int, max_iter: int = 255) -> torch.Tensor:
    """Algorithm 1 for a batch: (B, h, w) float in [0, 1], the remaining-iteration count i / max_iter.

    Pixels that escape at once stay at 1; pixels inside the Julia set reach 0.
    """
    c_abs = torch.sqrt(params.cx**2 + params.cy**2)
    radius = (1 + torch.sqrt(1 + 4 * c_abs)) / 2 + 1e-3  # smallest R with R² − R > |c|
    radius = torch.clamp(radius, min=2.0).view(-1, 1, 1)

    # Pixel centres, so that the grid is symmetric about the patch centre (centro-symmetry).
    xs = torch.arange(w, dtype=torch.float32) + 0.5 - w / 2
    ys = torch.arange(h, dtype=torch.float32) + 0.5 - h / 2
    view = lambda t: t.view(-1, 1, 1).float()  # noqa: E731
    zx = view(params.alpha) * xs.view(1, 1, w) / (0.5 * view(params.zf) * w) + view(params.dx)
    zy = view(params.beta) * ys.view(1, h, 1) / (0.5 * view(params.zf) * h) + view(params.dy)
    zx, zy = torch.broadcast_tensors(zx, zy)
    zx, zy = zx.clone(), zy.clone()
    cx, cy = view(params.cx), view(params.cy)

    i = torch.full_like(zx, float(max_iter))
    for _ in range(max_iter):
        active = (zx * zx + zy * zy < radius * radius) & (i > 0)
        if not active.any():
            break
        zx, zy = torch.where(active, zx * zx - zy * zy + cx, zx), torch.where(active, 2 * zx * zy + cy, zy)
        i = i - active.float()
    return i / max_iter


def random_julia_params(n: int, generator: torch.Generator,
                        shapes: tuple[str, ...] = SHAPES) -> tuple[JuliaParams, list[str]]:
    """Draw n defect parameter sets, each horizontal, vertical or point-like (section 3.2)."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=generator)  # noqa: E731
    kind = torch.randint(len(shapes), (n,), generator=generator)
    names = [shapes[k] for k in kind.tolist()]
    long_axis, short_axis, point = u(0.12, 0.35), u(1.0, 1.6), u(1.1, 1.8)
    alpha = torch.tensor([{"horizontal": a, "vertical": b, "point": p}[s]
                          for s, a, b, p in zip(names, long_axis, short_axis, point)])
    beta = torch.tensor([{"horizontal": b, "vertical": a, "point": p}[s]
                         for s, a, b, p in zip(names, long_axis, short_axis, point)])
    c = torch.tensor(JULIA_CONSTANTS)[torch.randint(len(JULIA_CONSTANTS), (n,), generator=generator)]
    c = c + 0.02 * (2 * torch.rand(n, 2, generator=generator) - 1)
    params = JuliaParams(alpha=alpha, beta=beta, dx=u(-0.4, 0.4), dy=u(-0.4, 0.4), cx=c[:, 0], cy=c[:, 1],
                         zf=u(0.8, 1.4))
    return params, names


class JuliaNoise:
    """Structured noise: Julia-set patterns blended into patches by a weighted average.

    The defect strength p = 1 − i/max_iter is 0 where the orbit escapes at once and 1 inside
    the set; the decorated patch is (1 − w·p)·x + w·p·tone. The tone is darker or brighter than
    the patch by `contrast` × its standard deviation (None: pure black or white). Pure black or
    white blobs are far outside the fabric's range and, in the first epochs, pull the network
    towards reproducing them instead of the weave.
    """

    def __init__(
        self,
        blend: tuple[float, float] = (0.5, 0.9),
        shapes: tuple[str, ...] = SHAPES,
        max_iter: int = 255,
        mask_level: float = 0.1,
        contrast: tuple[float, float] | None = (2.0, 4.0),
        name: str = "julia",
    ) -> None:
        self.name = name
        unknown = set(shapes) - set(SHAPES)
        if unknown:
            raise ValueError(f"noise.shapes: unknown {sorted(unknown)}; choose from {SHAPES}")
        if not 0 < blend[0] <= blend[1] <= 1:
            raise ValueError(f"noise.blend must satisfy 0 < low <= high <= 1, got {tuple(blend)}")
        self.blend, self.shapes, self.max_iter, self.mask_level = tuple(blend), tuple(shapes), max_iter, mask_level
        self.contrast = tuple(contrast) if contrast is not None else None

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        params, _ = random_julia_params(n, generator, self.shapes)
        p = 1 - julia_image(params, w, h, self.max_iter)  # (N, h, w)
        weight = self.blend[0] + (self.blend[1] - self.blend[0]) * torch.rand(n, 1, 1, generator=generator)
        wp = (weight * p).unsqueeze(1).to(x)  # (N, 1, h, w)
        decorated = (1 - wp) * x + wp * self._tone(x, generator)
        return decorated, p > self.mask_level

    def _tone(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(N, C, 1, 1) defect colour: darker or brighter than the patch by `contrast` of its std."""
        n = x.shape[0]
        if self.contrast is None:  # pure black or white
            return (torch.rand(n, 1, 1, 1, generator=generator) < 0.5).float().to(x)
        sign = torch.where(torch.rand(n, 1, 1, 1, generator=generator) < 0.5, -1.0, 1.0).to(x)
        k = (self.contrast[0]
             + (self.contrast[1] - self.contrast[0]) * torch.rand(n, 1, 1, 1, generator=generator)).to(x)
        # The std floor keeps defects visible on flat, textureless patches.
        mean, std = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True).clamp_min(0.05)
        return (mean + sign * k * std).clamp(0, 1)

    def __repr__(self) -> str:
        return f"JuliaNoise(blend={self.blend}, shapes={self.shapes})"


def escape_radius_ok(cx: float, cy: float, radius: float) -> bool:
    """The paper's condition on R (Algorithm 1, line 2)."""
    return radius > 0 and radius**2 - radius > math.hypot(cx, cy)
