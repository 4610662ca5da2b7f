"""A detector on the runtime asked for: PyTorch, or its ONNX graph in onnxruntime or OpenVINO."""

from __future__ import annotations

from pathlib import Path

from rdcae.inference.image import ImageDetector, Preprocessing

BACKENDS = ("torch", "onnx", "openvino")


def on_backend(detector, backend: str = "torch", onnx_path: Path | None = None,
               threshold: float | None = None) -> ImageDetector:
    """Whole-image detection with `detector` (a Detector) on `backend`: "torch" (its own PatchScorer), or
    its ONNX graph at `onnx_path` (exported there when missing) in "onnx" (onnxruntime) or "openvino" at
    the detector's precision; at `threshold` (a window score; default: the image operating point)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend}: choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return ImageDetector.from_detector(detector, threshold=threshold)
    from rdcae.inference.onnx import OnnxScorer, OpenVinoScorer, export_onnx

    if not Path(onnx_path).is_file():
        export_onnx(detector, onnx_path)
    scorer = OnnxScorer(onnx_path) if backend == "onnx" else OpenVinoScorer(onnx_path, precision=detector.precision)
    threshold = detector.image_threshold() if threshold is None else threshold
    return ImageDetector(scorer, Preprocessing.from_config(detector.config, detector.spec), threshold)
