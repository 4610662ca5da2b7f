"""What a drift of the camera's exposure does to a model's verdicts on clean images it never saw.

    python benchmarks/exposure_drift.py <run folder or sweep> [...] --images '<glob of clean images>' [...]

Each clean image is brightened or darkened as a line camera's gain or offset drifts (gray levels × g + o,
clipped to 0-255), then judged as `rdcae.detect` judges it, at the model's image operating point. Prints,
per drift, the clean images flagged and the share of their windows above the patch threshold, mean ± std
over the runs given (a sweep folder: every run in it with a model.pt).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

DRIFTS = [(1.0, 0), (0.9, 0), (0.95, 0), (1.05, 0), (1.1, 0), (1.0, -10), (1.0, -5), (1.0, 5), (1.0, 10)]


def models(paths: list[str]) -> list[Path]:
    found = []
    for p in map(Path, paths):
        found += [p / "model.pt"] if (p / "model.pt").is_file() else sorted(p.glob("*/model.pt"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders or sweep folders (their model.pt)")
    parser.add_argument("--images", required=True, nargs="+", help="globs of clean images the runs never trained on")
    args = parser.parse_args()

    from rdcae.data.images import read_image
    from rdcae.inference import load_detector
    from rdcae.inference.image import ImageDetector

    files = sorted({f for pattern in args.images for f in glob.glob(pattern)})
    if not files:
        raise SystemExit(f"--images {args.images}: no file matches")
    images = [read_image(f).astype(np.float32) for f in files]
    found = models(args.runs)
    if not found:
        raise SystemExit(f"{', '.join(args.runs)}: no model.pt there or in a folder below")
    flagged = np.zeros((len(found), len(DRIFTS)))
    above = np.zeros((len(found), len(DRIFTS)))
    for i, path in enumerate(found):
        detector = load_detector(path)
        judge = ImageDetector.from_detector(detector)
        for j, (gain, offset) in enumerate(DRIFTS):
            shares = []
            for image in images:
                detection = judge.detect(np.clip(image * gain + offset, 0, 255).astype(np.uint8))
                flagged[i, j] += detection.verdict == "defect"
                shares.append(float((detection.window_scores > float(detector.threshold)).mean()))
            above[i, j] = np.mean(shares)
    print(f"{len(found)} runs, {len(files)} clean images each ({Path(files[0]).parent})")
    print("| gain | offset | clean images flagged | windows above the patch threshold |")
    print("| --- | --- | --- | --- |")
    for j, (gain, offset) in enumerate(DRIFTS):
        print(f"| {gain:g} | {offset:+d} | {flagged[:, j].mean():.1f} ± {flagged[:, j].std():.1f} of {len(files)} "
              f"({', '.join(f'{v:.0f}' for v in flagged[:, j])}) | {100 * above[:, j].mean():.1f} ± "
              f"{100 * above[:, j].std():.1f} % |")


if __name__ == "__main__":
    main()
