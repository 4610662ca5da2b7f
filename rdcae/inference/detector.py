"""The detector file (model.pt): the network spec and weights, the anomaly score, the patch
threshold, the image operating point (calibration scores and windows per image,
rdcae.metrics.operating_point) and the run's config, as plain tensors and dicts that load with
weights_only=True; and the Detector rebuilt from it. Needs torch, not the training stack (no
Lightning, no Hydra)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
from torch import nn

from rdcae.metrics.operating_point import NO_OVERLAP, ImageOperatingPoint
from rdcae.model.network import ConvAutoencoder, NetworkSpec, chunk_size_for, map_in_chunks
from rdcae.model.score import reconstruction_error, residual_energy, strip_score

FORMAT = "rdcae-detector/1"
PRECISIONS = ("fp32", "bf16")


def save_detector(path: str | Path, net: ConvAutoencoder, threshold: float, score: str, score_width: int,
                  config: dict, operating_point: ImageOperatingPoint | None = None) -> Path:
    """Write a trained network, its score (model.score=auto: the one chosen), its patch threshold, its
    image operating point and the resolved run config."""
    payload = {
        "format": FORMAT,
        "network": net.spec.to_dict(),
        "score": {"kind": score, "width": score_width},
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "threshold": float(threshold),
        "config": config,
    }
    if operating_point is not None:
        payload["operating_point"] = operating_point.to_dict()
    path = Path(path)
    torch.save(payload, path)
    return path


def image_threshold(point: ImageOperatingPoint | None, patch_threshold: float, patch_size: int,
                    false_alarms_per_image: float | None = None, stride: int | None = None,
                    overlap: bool = False) -> float:
    """The window score above which an image is a defect under the operating point `point` (None, in
    files written before it existed: the patch threshold), for `false_alarms_per_image` at `stride`,
    for single windows or (`overlap`) tiles of residuals averaged over overlapping windows."""
    if point is None:
        if overlap:
            raise ValueError(NO_OVERLAP)
        return float(patch_threshold)
    return point.threshold(false_alarms_per_image, (stride or patch_size) / patch_size, overlap)


class PatchScorer(nn.Module):
    """The graph a detector runs and exports: uint8 patches (N, C, P, P) as the image holds them →
    (score (N,), energy (N, P, P)). Scaling to [0, 1], the network's standardisation and the anomaly
    score are inside; energy is Σ_c (x − x̂)² per pixel, from which the anomaly map is made.

    precision: "fp32", or "bf16" to run the network under bfloat16 autocast (about twice the
    patches per second on CPUs with AVX-512 BF16 or AMX and on GPUs; the residual stays fp32)."""

    def __init__(self, net: ConvAutoencoder, score: str = "norm", score_width: int = 4,
                 precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.net, self.score_kind, self.score_width, self.precision = net, score, score_width, precision

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_pixels(patches.float() / 255)

    def score_pixels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score (N,), energy (N, P, P)) of float patches x (N, C, P, P) in [0, 1]."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            x_hat = self.net(x)
        x_hat = x_hat.float()
        energy = residual_energy(x, x_hat)
        score = reconstruction_error(x, x_hat) if self.score_kind == "norm" else strip_score(energy, self.score_width)
        return score, energy


class Detector(nn.Module):
    """A trained detector. On patches: score(x) = the run's anomaly score of x − D(E(x)) per patch
    (‖·‖₂ unless the run set model.score), predict(x) = score > threshold, x float (N, C, P, P) in
    [0, 1]. On images: detect(image) (rdcae.inference.image), with the run's preprocessing.

    precision: "fp32" or "bf16" (PatchScorer).
    operating_point: the image operating point (None in files written before it existed: images are
    then judged at the patch threshold).
    """

    def __init__(self, net: ConvAutoencoder, threshold: float, config: dict, precision: str = "fp32",
                 chunk_size: int | None = None, score: str = "norm", score_width: int = 4,
                 operating_point: ImageOperatingPoint | None = None) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.score_kind, self.score_width = score, score_width
        self.net, self.config, self.precision, self.chunk_size = (net.to(memory_format=torch.channels_last), config,
                                                                  precision, chunk_size)
        self.register_buffer("threshold", torch.tensor(threshold))
        self.operating_point = operating_point

    def image_threshold(self, false_alarms_per_image: float | None = None, stride: int | None = None,
                        overlap: bool = False) -> float:
        """The window score above which an image is a defect, for `false_alarms_per_image` clean images
        flagged (default: the run's operating_point.false_alarms_per_image) at detection `stride`, for
        single windows or (`overlap`) tiles scored over overlapping windows."""
        return image_threshold(self.operating_point, float(self.threshold), self.spec.patch_size,
                               false_alarms_per_image, stride, overlap)

    @property
    def spec(self) -> NetworkSpec:
        return self.net.spec

    def check_patches(self, x) -> None:
        """Refuse, saying what is expected, what score() cannot take."""
        spec = self.spec
        expected = f"float patches (N, {spec.channels}, {spec.patch_size}, {spec.patch_size}) in [0, 1]"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Detector.score takes a torch.Tensor of {expected}, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"Detector.score takes {expected}, got dtype {x.dtype}: divide uint8 pixels by 255 "
                            "(or use Detector.detect on the image)")
        if x.dim() != 4 or tuple(x.shape[1:]) != (spec.channels, spec.patch_size, spec.patch_size):
            raise ValueError(f"Detector.score takes {expected}, got shape {tuple(x.shape)}")
        if len(x) and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ValueError(f"Detector.score takes {expected}, got values in "
                             f"[{float(x.min()):g}, {float(x.max()):g}]: divide 0-255 pixels by 255")

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        self.check_patches(x)
        device, scorer = self.threshold.device, self.scorer()
        chunk_size = self.chunk_size or chunk_size_for(device)
        return map_in_chunks(lambda chunk: scorer.score_pixels(chunk)[0], x, device, chunk_size)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x) > self.threshold

    def scorer(self) -> PatchScorer:
        """The uint8-patch graph of this detector (what detect() runs and rdcae.export writes)."""
        return PatchScorer(self.net, self.score_kind, self.score_width, self.precision).eval()

    def detect(self, image, stride: int | None = None, threshold: float | None = None):
        """Score a whole image ((H, W) or (H, W, C) uint8 array, or a path): its score, anomaly map,
        verdict and defect regions (rdcae.inference.image.Detection)."""
        from rdcae.inference.image import ImageDetector

        return ImageDetector.from_detector(self).detect(image, stride=stride, threshold=threshold)


def load_detector(path: str | Path, map_location="cpu", precision: str = "fp32") -> Detector:
    """The detector in an rdcae model file; refuses, naming it, a file that is not one (nothing in it runs)."""
    path = Path(path)
    if path.is_dir():
        hint = f"model={path / 'model.pt'}" if (path / "model.pt").is_file() else "a run's model.pt"
        raise FileNotFoundError(f"model={path}: a folder, not a model file; point it at {hint}")
    if not path.is_file():
        raise FileNotFoundError(f"model={path}: no such file; point it at a run's model.pt")
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"model={path}: an ONNX export, not a run's model.pt, which this takes; python -m "
                         "rdcae.detect and rdcae.inference.backends.load_exported run the .onnx as it is")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # neither PyTorch's zip nor its older pickle format
        raise ValueError(f"model={path}: not an rdcae detector file (empty, or an image, text or other file "
                         "that PyTorch did not write); point it at a run's model.pt")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)  # then the whole detector to map_location
    except pickle.UnpicklingError:  # objects to build by running code, or bytes that are no pickle at all
        raise ValueError(f"model={path}: not a safe rdcae detector file: it holds more than tensors and plain "
                         "containers (Python objects that loading would have to run, or damaged bytes), so it was "
                         "refused and nothing in it ran") from None
    except Exception:  # a zip that is not one, a truncated or zero-byte file
        raise ValueError(f"model={path}: not an rdcae detector file (damaged, truncated or not written by "
                         "PyTorch); use a run's model.pt") from None
    if isinstance(payload, dict) and "state_dict" in payload and "optimizer_states" in payload:
        model = Path(path).resolve().parent.parent / "model.pt"
        raise ValueError(f"model={path}: a training checkpoint, not a detector file; the run's detector is "
                         + (f"{model}" if model.is_file() else "model.pt in the run folder")
                         + " (written at the end of training)")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"model={path}: not an rdcae detector file (expected format {FORMAT!r})")
    try:
        threshold = float(payload["threshold"])
        net = ConvAutoencoder(NetworkSpec.from_dict(payload["network"]))
        net.load_state_dict(payload["state_dict"])
        score = payload.get("score", {"kind": "norm", "width": 4})  # files written before model.score: the norm
        point = payload.get("operating_point")
        point = ImageOperatingPoint.from_dict(point) if point else None
        config, kind, width = payload["config"], score["kind"], score["width"]
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        detail = (str(err).splitlines() or [""])[0]  # a state_dict mismatch lists every tensor, one per line
        raise ValueError(f"model={path}: its contents are damaged or from another rdcae version "
                         f"({type(err).__name__}: {detail}); "
                         "use a run's model.pt as training wrote it") from None
    if not math.isfinite(threshold):
        raise ValueError(f"model={path}: its threshold is {payload['threshold']}; the file is damaged or comes "
                         "from an unfinished run")
    return Detector(net.eval(), threshold, config, precision=precision, score=kind, score_width=width,
                    operating_point=point).to(map_location)
