"""The torch network on one image's windows with the decoder's layers in their written order (nearest 2×
upsampling, then a 5×5 convolution) and as it runs without gradients (one 3×3 convolution on the coarse
grid into the four phases, pixel-shuffled): how far apart their scores are, and the time of each.

    python benchmarks/decoder_phases.py <run>/model.pt <image.png> [--precision bf16|fp32] [--rounds 3]

Both score the image's windows (stride = patch size, wholly on fabric) in chunks of 256 in the channels-last
layout, as `rdcae.detect` does; each round times ten passes of each, alternating.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch


def main(model: str, image_path: str, precision: str = "bf16", rounds: int = 3) -> None:
    from rdcae.data.images import read_image
    from rdcae.inference import load_detector
    from rdcae.inference.detector import PatchScorer
    from rdcae.inference.image import ImageDetector

    detector = load_detector(model, precision=precision)
    windows = torch.from_numpy(ImageDetector.from_detector(detector).windows(read_image(image_path))[1])
    phases = PatchScorer(detector.net, detector.score_kind, detector.score_width, precision).eval()
    net = copy.deepcopy(detector.net)
    net.decoder = torch.nn.Sequential(*net.decoder)  # the same layers, in their written order with or without gradients
    written = PatchScorer(net, detector.score_kind, detector.score_width, precision).eval()

    def run(scorer):
        return [scorer(windows[i:i + 256].contiguous(memory_format=torch.channels_last))
                for i in range(0, len(windows), 256)]

    with torch.inference_mode():
        a, b = (torch.cat([s for s, _ in run(scorer)]) for scorer in (written, phases))
        print(f"{len(windows)} windows, torch {precision}; scores: largest relative difference "
              f"{float(((a - b).abs() / a.abs()).max()):.1e}, the image's score {float(a.max()):.5f} and "
              f"{float(b.max()):.5f}")
        for r in range(rounds):
            times = {}
            for name, scorer in (("written order", written), ("four phases", phases)):
                start = time.perf_counter()
                for _ in range(10):
                    run(scorer)
                times[name] = (time.perf_counter() - start) / 10 * 1000
            print(f"round {r + 1}: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in times.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("image")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.model, args.image, args.precision, args.rounds)
