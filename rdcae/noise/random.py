"""Random-noise alternatives to the Julia defects (Table 3)."""

from __future__ import annotations

import torch


class GaussianNoise:
    """Additive white Gaussian noise of standard deviation `sigma`, clipped to [0, 1]."""

    def __init__(self, sigma: float = 0.1, name: str = "gaussian") -> None:
        self.name = name
        if sigma <= 0:
            raise ValueError(f"noise.sigma must be > 0, got {sigma}")
        self.sigma = sigma

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        noise = self.sigma * torch.randn(x.shape, generator=generator).to(x)
        return (x + noise).clamp(0, 1), torch.ones(x.shape[0], *x.shape[2:], dtype=torch.bool)


class PoissonNoise:
    """Shot noise: counts ~ Poisson(x · peak), rescaled by 1 / peak."""

    def __init__(self, peak: float = 30.0, name: str = "poisson") -> None:
        self.name = name
        if peak <= 0:
            raise ValueError(f"noise.peak must be > 0, got {peak}")
        self.peak = peak

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        noisy = torch.poisson(x.cpu() * self.peak, generator=generator).to(x) / self.peak
        return noisy.clamp(0, 1), torch.ones(x.shape[0], *x.shape[2:], dtype=torch.bool)


class SaltPepperNoise:
    """A fraction `amount` of the pixels set to 0 or 1 (all channels alike)."""

    def __init__(self, amount: float = 0.05, name: str = "salt_pepper") -> None:
        self.name = name
        if not 0 < amount <= 1:
            raise ValueError(f"noise.amount must be in (0, 1], got {amount}")
        self.amount = amount

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        hit = torch.rand(n, 1, h, w, generator=generator) < self.amount
        salt = (torch.rand(n, 1, h, w, generator=generator) < 0.5).float()
        decorated = torch.where(hit.to(x.device), salt.to(x), x)
        return decorated, hit[:, 0]


class NoNoise:
    """No synthetic defects: the training set is all normal (train AUC is then undefined)."""

    def __init__(self, name: str = "none") -> None:
        self.name = name

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return x, torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.bool)
