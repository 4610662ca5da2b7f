"""The detector file (model.pt): the network spec and weights, the anomaly score, the threshold and
the run's config, as plain tensors and dicts that load with weights_only=True; and the Detector
rebuilt from it. Needs torch, not the training stack (no Lightning, no Hydra)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rdcae.model.network import ConvAutoencoder, NetworkSpec, chunk_size_for, map_in_chunks
from rdcae.model.score import anomaly_score

FORMAT = "rdcae-detector/1"


def save_detector(path: str | Path, net: ConvAutoencoder, threshold: float, score: str, score_width: int,
                  config: dict) -> Path:
    """Write a trained network, its score (model.score=auto: the one chosen), its threshold and the
    resolved run config."""
    payload = {
        "format": FORMAT,
        "network": net.spec.to_dict(),
        "score": {"kind": score, "width": score_width},
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "threshold": float(threshold),
        "config": config,
    }
    path = Path(path)
    torch.save(payload, path)
    return path


class Detector(nn.Module):
    """score(x) = the run's anomaly score of x − D(E(x)) per patch (‖·‖₂ unless the run set
    model.score); predict(x) = score > threshold. x: (N, C, P, P) in [0, 1].

    precision: "fp32", or "bf16" to run the network under bfloat16 autocast (about twice the
    patches per second on CPUs with AVX-512 BF16 and on GPUs; the residual is taken in fp32).
    """

    def __init__(self, net: ConvAutoencoder, threshold: float, config: dict, precision: str = "fp32",
                 chunk_size: int | None = None, score: str = "norm", score_width: int = 4) -> None:
        super().__init__()
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision={precision!r}: choose 'fp32' or 'bf16'")
        self.score_kind, self.score_width = score, score_width
        self.net, self.config, self.precision, self.chunk_size = (net.to(memory_format=torch.channels_last), config,
                                                                  precision, chunk_size)
        self.register_buffer("threshold", torch.tensor(threshold))

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        device = self.threshold.device

        def error(chunk: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                r = self.net(chunk)
            return anomaly_score(chunk, r.float(), self.score_kind, self.score_width)

        return map_in_chunks(error, x, device, self.chunk_size or chunk_size_for(device))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x) > self.threshold


def load_detector(path: str | Path, map_location="cpu", precision: str = "fp32") -> Detector:
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an rdcae detector file (expected format {FORMAT!r})")
    net = ConvAutoencoder(NetworkSpec.from_dict(payload["network"]))
    net.load_state_dict(payload["state_dict"])
    score = payload.get("score", {"kind": "norm", "width": 4})  # files written before model.score existed: the norm
    return Detector(net.eval(), payload["threshold"], payload["config"], precision=precision,
                    score=score["kind"], score_width=score["width"]).to(map_location)
