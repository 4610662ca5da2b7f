"""Inference without the training stack: the detector file format, saving and loading it, and the
Detector that scores patches. Imports torch, never Lightning or Hydra, so a deployment needs only
`pip install torch` and this package."""

from rdcae.inference.detector import FORMAT, Detector, load_detector, save_detector

__all__ = ["FORMAT", "Detector", "load_detector", "save_detector"]
