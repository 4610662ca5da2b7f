"""The detector as an ONNX graph (model.onnx) and the runtimes that run it without PyTorch's network
code: onnxruntime (OnnxScorer) and, optionally, OpenVINO (OpenVinoScorer).

The graph is the detector's PatchScorer at fp32: uint8 patches (batch, C, P, P) named `patches` →
`score` (batch,) and `energy` (batch, P, P), float32. What a deployment needs besides the graph (the
threshold, the network spec, the score, the run config, the image operating point and the
calibration scores it comes from) travels in the file's metadata_props, so one .onnx file is a whole
detector, as model.pt is: `rdcae.detect model=model.onnx` and load_exported() run it alone."""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from rdcae.inference.detector import Detector, PatchScorer, image_threshold
from rdcae.metrics.operating_point import OVERLAP_WINDOWS, ImageOperatingPoint, exponential_tail
from rdcae.model.network import NetworkSpec, chunk_size_for
from rdcae.precision import openvino_computes_bf16

FORMAT = "rdcae-onnx/1"
OPSET = 17  # what the lower bounds of onnxruntime and openvino in pyproject.toml were checked with
CHUNK = chunk_size_for(torch.device("cpu"))  # patches per run, as the Detector takes them on a CPU
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # precision= → OpenVINO's INFERENCE_PRECISION_HINT
# OpenVINO runs the graph compiled for this batch, faster in bf16 than for a dynamic one and as fast in fp32
# (PERFORMANCE.md, "Whole images"); 256 pads a 4096x256 AITEX image's 736 windows by 4 %
OPENVINO_BATCH = 256


def _fp32_scorer(detector: Detector) -> PatchScorer:
    """A CPU fp32 copy of the detector's graph, leaving the detector where and as it is."""
    scorer = copy.deepcopy(detector.scorer()).cpu().float()
    scorer.precision = "fp32"
    return scorer.eval()


def export_onnx(detector: Detector, path: str | Path) -> Path:
    """Write the detector's PatchScorer (fp32, dynamic batch axis) and its metadata as an ONNX file."""
    path = Path(path)
    spec = detector.spec
    example = torch.zeros((2, spec.channels, spec.patch_size, spec.patch_size), dtype=torch.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # The TorchScript exporter: torch's default (torch.export-based) one needs onnxscript and is
        # ~20x slower here; this one needs only torch and onnx, and runs to the same numbers.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            scorer = _fp32_scorer(detector)
            scorer(example)  # the decoder's phase weights made once: constants in the graph, not made at every run
            torch.onnx.export(
                scorer, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                input_names=["patches"], output_names=["score", "energy"],
                dynamic_axes={"patches": {0: "batch"}, "score": {0: "batch"}, "energy": {0: "batch"}},
            )
        model = onnx.load(str(tmp))
        props = {
            "format": FORMAT,
            "threshold": repr(float(detector.threshold)),
            "network": json.dumps(spec.to_dict()),
            "score": json.dumps({"kind": detector.score_kind, "width": int(detector.score_width)}),
            "config": json.dumps(detector.config, default=str),
        }
        if detector.operating_point is not None:
            props["image_operating_point"] = json.dumps(operating_point_card(detector))
            # the scores themselves, so that any other rate or stride gives model.pt's threshold exactly
            props["operating_point_scores"] = json.dumps(detector.operating_point.scores.astype(np.float32).tolist())
            if detector.operating_point.overlap_scores is not None:
                props["operating_point_overlap_scores"] = json.dumps(
                    detector.operating_point.overlap_scores.astype(np.float32).tolist())
                props["operating_point_overlap_windows"] = str(detector.operating_point.overlap_windows)
        onnx.helper.set_model_props(model, props)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def operating_point_card(detector: Detector) -> dict:
    """The image operating point in a form a deployment can use without rdcae: the window threshold
    at the run's false alarms per image, and the exponential tail it comes from, so that another rate
    α gives t = q90 + sigma · ln(0.10 / p) with p = 1 − (1 − α)^(1 / windows_per_image)."""
    point = detector.operating_point
    q90, sigma = exponential_tail(point.scores)
    return {"false_alarms_per_image": point.false_alarms_per_image, "windows_per_image": point.windows_per_image,
            "threshold": point.threshold(), "q90": q90, "sigma": sigma}


def exported_from(detector: Detector, path: str | Path) -> bool:
    """Whether the exported detector at `path` came from `detector`: the same threshold, score and run
    config. False also for a file that is not an rdcae export."""
    try:
        meta = load_onnx_metadata(path)
    except (OSError, ValueError):
        return False
    config = json.loads(json.dumps(detector.config, default=str))
    return (meta["threshold"] == float(detector.threshold) and meta["config"] == config
            and meta["score"] == {"kind": detector.score_kind, "width": int(detector.score_width)})


def load_onnx_metadata(path: str | Path) -> dict:
    """The rdcae metadata of an exported detector: threshold (float), spec (NetworkSpec), score
    ({"kind", "width"}), config (dict), image_operating_point (the card, or None) and operating_point
    (ImageOperatingPoint, or None in files exported without the calibration scores); refuses, naming
    it, a file that is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model={path}: no such file; write one with python -m rdcae.export model=.../model.pt")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends: not an ONNX file at all
        raise ValueError(f"model={path}: not a readable ONNX file (damaged, truncated or another format); export "
                         "one with python -m rdcae.export") from None
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("format") != FORMAT:
        raise ValueError(f"model={path}: an ONNX file without rdcae detector metadata (expected format {FORMAT!r}); "
                         "export one with python -m rdcae.export")
    try:
        score = json.loads(props["score"])
        card = json.loads(props["image_operating_point"]) if "image_operating_point" in props else None
        point = None
        if card is not None and "operating_point_scores" in props:
            overlap = props.get("operating_point_overlap_scores")
            point = ImageOperatingPoint(json.loads(props["operating_point_scores"]), card["windows_per_image"],
                                        card["false_alarms_per_image"],
                                        None if overlap is None else json.loads(overlap),
                                        int(props.get("operating_point_overlap_windows",
                                                      4 if overlap is not None else OVERLAP_WINDOWS)))
        return {"format": FORMAT, "threshold": float(props["threshold"]),
                "spec": NetworkSpec.from_dict(json.loads(props["network"])),
                "score": {"kind": str(score["kind"]), "width": int(score["width"])},
                "config": json.loads(props["config"]),
                "image_operating_point": card, "operating_point": point}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"model={path}: its rdcae metadata is damaged ({type(err).__name__}: {err})") from None


class _ExportedDetector:
    """What OnnxScorer and OpenVinoScorer share: the metadata, the input check and the chunking."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta = load_onnx_metadata(self.path)
        self.threshold: float = meta["threshold"]
        self.spec: NetworkSpec = meta["spec"]
        self.score_kind: str = meta["score"]["kind"]
        self.score_width: int = meta["score"]["width"]
        self.config: dict = meta["config"]
        self.card: dict | None = meta["image_operating_point"]
        self.operating_point: ImageOperatingPoint | None = meta["operating_point"]

    def image_threshold(self, false_alarms_per_image: float | None = None, stride: int | None = None,
                        overlap: bool = False) -> float:
        """The window score above which an image is a defect, as Detector.image_threshold gives it for the
        model.pt this file was exported from."""
        size = self.spec.patch_size
        # a file exported without the calibration scores holds the card alone: its one threshold
        if self.operating_point is not None or self.card is None or overlap:
            return image_threshold(self.operating_point, self.threshold, size, false_alarms_per_image, stride,
                                   overlap)
        if false_alarms_per_image in (None, self.card["false_alarms_per_image"]) and stride in (None, size):
            return float(self.card["threshold"])
        raise ValueError(f"model={self.path}: exported without its calibration scores, so it holds the image "
                         f"threshold for {self.card['false_alarms_per_image']:g} false alarms per image at stride "
                         f"{size} alone; export it again (python -m rdcae.export model=<run>/model.pt) or give "
                         "threshold=")

    def _run(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores (K,), energy (K, P, P)) float32 of uint8 patches (K, C, P, P)."""
        c, p = self.spec.channels, self.spec.patch_size
        expected = f"uint8 patches (K, {c}, {p}, {p})"
        if not isinstance(patches, np.ndarray):
            raise TypeError(f"{type(self).__name__} takes a numpy array of {expected}, got {type(patches).__name__}")
        if patches.dtype != np.uint8:
            raise TypeError(f"{type(self).__name__} takes {expected}, got dtype {patches.dtype}")
        if patches.ndim != 4 or patches.shape[1:] != (c, p, p):
            raise ValueError(f"{type(self).__name__} takes {expected}, got shape {patches.shape}")
        if not len(patches):
            return np.zeros(0, np.float32), np.zeros((0, p, p), np.float32)
        runs = [self._run(np.ascontiguousarray(patches[i:i + CHUNK])) for i in range(0, len(patches), CHUNK)]
        return (np.concatenate([s for s, _ in runs]).astype(np.float32, copy=False),
                np.concatenate([e for _, e in runs]).astype(np.float32, copy=False))


def _check_threads(threads: int | None) -> None:
    if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        raise ValueError(f"threads={threads!r} must be a positive integer (None: the runtime's default)")


class OnnxScorer(_ExportedDetector):
    """An exported detector run by onnxruntime on the CPU: scorer(patches) → (scores, energy)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__(path)
        _check_threads(threads)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def _run(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score, energy = self.session.run(["score", "energy"], {"patches": chunk})
        return score, energy


class OpenVinoScorer(_ExportedDetector):
    """An exported detector run by OpenVINO on the CPU: scorer(patches) → (scores, energy).

    precision: "fp32", or "bf16" for OpenVINO's bf16 inference precision (CPUs with AVX-512 BF16 or
    AMX). OpenVINO's own default on such CPUs is bf16, so fp32 is asked for explicitly."""

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ImportError("backend=openvino needs OpenVINO: pip install 'openvino>=2024.2' (in a checkout "
                              "of rdcae: pip install -e '.[openvino]')") from None
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"precision={precision!r}: choose one of {', '.join(OPENVINO_PRECISIONS)}")
        super().__init__(path)
        _check_threads(threads)
        core = ov.Core()
        if precision == "bf16" and not openvino_computes_bf16(core):
            raise ValueError("precision=bf16: this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX); "
                             "use precision=fp32")
        config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.precision = precision
        model = core.read_model(str(self.path))
        model.reshape({model.inputs[0].get_any_name(): [OPENVINO_BATCH, self.spec.channels, self.spec.patch_size,
                                                         self.spec.patch_size]})
        self.compiled = core.compile_model(model, "CPU", config)

    def _run(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, energy = [], []
        for i in range(0, len(chunk), OPENVINO_BATCH):  # the last part padded to the compiled batch
            part = chunk[i : i + OPENVINO_BATCH]
            n = len(part)
            if n < OPENVINO_BATCH:
                part = np.concatenate([part, np.zeros((OPENVINO_BATCH - n, *part.shape[1:]), part.dtype)])
            result = self.compiled(part)
            scores.append(result["score"][:n])
            energy.append(result["energy"][:n])
        return np.concatenate(scores), np.concatenate(energy)


@torch.no_grad()
def torch_scores(detector: Detector, patches: np.ndarray) -> np.ndarray:
    """The detector's own fp32 scores (K,) of uint8 patches (K, C, P, P), on the CPU: the reference of parity()."""
    scorer = _fp32_scorer(detector)
    x = torch.from_numpy(np.ascontiguousarray(patches))
    return torch.cat([scorer(chunk)[0] for chunk in x.split(CHUNK)] or [torch.zeros(0)]).numpy()


def parity(detector: Detector, runtime: _ExportedDetector, patches: np.ndarray) -> dict:
    """How far a runtime's scores are from PyTorch's on uint8 patches (K, C, P, P): the largest
    relative score difference and the share of patches whose decision (score > threshold) agrees."""
    reference = torch_scores(detector, patches)
    scores, _ = runtime(patches)
    threshold = float(detector.threshold)
    relative = np.abs(scores - reference) / np.maximum(np.abs(reference), np.finfo(np.float32).tiny)
    agree = (scores > threshold) == (reference > threshold)
    return {"patches": len(patches), "max_relative_difference": float(relative.max(initial=0.0)),
            "decisions_agree": float(agree.mean()) if len(agree) else 1.0, "disagreements": int((~agree).sum())}
