"""Decoration: turning a share of the training patches into synthetic defects, with one noise model
or a mixture of several."""

from __future__ import annotations

import torch

from rdcae.noise.random import NoNoise


def decorate(x: torch.Tensor, noise_ratio: float, noise,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Decorate round(noise_ratio % of N) randomly chosen samples of x (N, C, P, P).

    Returns the new batch and a (N,) bool tensor marking the synthetic defects.
    """
    if not 0 <= noise_ratio <= 100:
        raise ValueError(f"noise_ratio={noise_ratio} must be a percentage in [0, 100]")
    n = x.shape[0]
    k = 0 if isinstance(noise, NoNoise) else round(noise_ratio / 100 * n)
    chosen = torch.randperm(n, generator=generator)[:k]
    is_synthetic = torch.zeros(n, dtype=torch.bool)
    x = x.clone()
    if k:
        x[chosen], _ = noise(x[chosen], generator)
        is_synthetic[chosen] = True
    return x, is_synthetic


class MixedNoise:
    """Each decorated sample drawn from one of several named noise models, chosen with `weights`
    (by name; equal weights when None)."""

    def __init__(self, models: dict, weights: dict | None = None, name: str = "mixed") -> None:
        self.name = name
        if not models:
            raise ValueError("noise.models must name at least one noise model")
        weights = dict.fromkeys(models, 1.0) if weights is None else dict(weights)
        if set(weights) != set(models):
            raise ValueError(f"noise.weights must name the same models as noise.models {sorted(models)}, "
                             f"got {sorted(weights)}")
        self.names = list(models)
        self.models = [models[name] for name in self.names]
        w = torch.tensor([float(weights[name]) for name in self.names])
        if w.min() < 0 or w.sum() <= 0:
            raise ValueError(f"noise.weights must be non-negative with a positive sum, got {dict(weights)}")
        self.weights = w / w.sum()

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        which = torch.multinomial(self.weights, x.shape[0], replacement=True, generator=generator)
        decorated, mask = x.clone(), torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.bool)
        for k, model in enumerate(self.models):
            chosen = (which == k).nonzero().flatten()
            if len(chosen):
                decorated[chosen], mask[chosen] = model(x[chosen], generator)
        return decorated, mask

    def __repr__(self) -> str:
        return f"MixedNoise({dict(zip(self.names, self.weights.tolist()))})"
