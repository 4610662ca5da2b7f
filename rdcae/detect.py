"""The exported detector: network weights, threshold and config in a file that loads with weights_only=True."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from rdcae.model.network import ConvAutoencoder, anomaly_score, chunk_size_for, map_in_chunks

FORMAT = "rdcae-detector/1"


def export(module, cfg, path: str | Path) -> Path:
    """Write the trained network, its threshold and the resolved config (plain tensors and dicts only)."""
    hp = module.hparams
    payload = {
        "format": FORMAT,
        "network": {"channels": hp.channels, "patch_size": hp.patch_size, "filters": list(hp.filters),
                    "latent_dim": hp.latent_dim, "negative_slope": hp.negative_slope, "normalize": hp.normalize,
                    "output": hp.output},
        "score": {"kind": module.score_kind, "width": hp.get("score_width", 4)},  # model.score=auto: the score chosen
        "state_dict": {k: v.detach().cpu() for k, v in module.net.state_dict().items()},
        "threshold": float(module.threshold),
        "config": OmegaConf.to_container(cfg, resolve=True),
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

    def __init__(self, net: ConvAutoencoder, threshold: float, config: dict, precision: str = "fp32", chunk_size: int | None = None,
                 score: str = "norm", score_width: int = 4) -> None:
        super().__init__()
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision={precision!r}: choose 'fp32' or 'bf16'")
        self.score_kind, self.score_width = score, score_width
        self.net, self.config, self.precision, self.chunk_size = net.to(memory_format=torch.channels_last), config, precision, chunk_size
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
    spec = payload["network"]
    net = ConvAutoencoder(spec["channels"], spec["patch_size"], tuple(spec["filters"]), spec["latent_dim"],
                         negative_slope=spec["negative_slope"], normalize=spec["normalize"], output=spec["output"])
    net.load_state_dict(payload["state_dict"])
    score = payload.get("score", {"kind": "norm", "width": 4})  # files written before model.score existed: the norm
    return Detector(net.eval(), payload["threshold"], payload["config"], precision=precision,
                    score=score["kind"], score_width=score["width"]).to(map_location)
