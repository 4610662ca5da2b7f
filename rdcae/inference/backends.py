"""A detector on the runtime asked for: PyTorch, or its ONNX graph in onnxruntime or OpenVINO."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rdcae.inference.image import ImageDetector

BACKENDS = ("torch", "onnx", "openvino")
EXPORTED_BACKENDS = ("onnx", "openvino")


def on_backend(detector, backend: str = "torch", onnx_path: Path | None = None,
               threshold: float | None = None, overlap: bool = False,
               announce: Callable[[str], None] | None = None) -> ImageDetector:
    """Whole-image detection with `detector` (a Detector) on `backend`: "torch" (its own PatchScorer), or
    its ONNX graph at `onnx_path` (exported there when missing or exported from another model, after
    telling `announce` why) in "onnx" (onnxruntime) or "openvino" at the detector's precision; at
    `threshold` (a window score; default: the image operating point), with tiles scored over overlapping
    windows where `overlap` (rdcae.inference.image)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend}: choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return ImageDetector.from_detector(detector, threshold=threshold, overlap=overlap)
    from rdcae.inference.onnx import export_onnx, exported_from

    if not Path(onnx_path).is_file() or not exported_from(detector, onnx_path):
        if announce is not None:
            why = "missing" if not Path(onnx_path).is_file() else "exported from another model"
            announce(f"exporting {onnx_path} ({why})")
        export_onnx(detector, onnx_path)
    threshold = detector.image_threshold(overlap=overlap) if threshold is None else threshold
    return load_exported(onnx_path, backend, detector.precision, threshold, overlap)


def open_exported(path: str | Path, backend: str = "onnx", precision: str = "fp32"):
    """The exported detector at `path` (a model.onnx) on `backend`, "onnx" (onnxruntime) or "openvino" at
    `precision`: it scores uint8 patches and carries the threshold, the operating point and the run's
    config (rdcae.inference.onnx)."""
    if backend not in EXPORTED_BACKENDS:
        raise ValueError(f"backend={backend}: an exported .onnx detector runs on {' or '.join(EXPORTED_BACKENDS)} "
                         "(backend=torch takes the run's model.pt)")
    from rdcae.inference.onnx import OnnxScorer, OpenVinoScorer

    return OnnxScorer(path) if backend == "onnx" else OpenVinoScorer(path, precision=precision)


def load_exported(path: str | Path, backend: str = "onnx", precision: str = "fp32",
                  threshold: float | None = None, overlap: bool = False) -> ImageDetector:
    """Whole-image detection with the exported detector at `path` alone, no model.pt and no PyTorch
    network code: load_exported("model.onnx").detect(image) decides as the model.pt it came from, at
    `threshold` (a window score; default: the image operating point it carries), with tiles scored
    over overlapping windows where `overlap`."""
    return ImageDetector.from_exported(open_exported(path, backend, precision), threshold, overlap)
