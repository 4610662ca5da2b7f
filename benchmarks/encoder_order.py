"""The torch network on one image's windows with the encoder's layers in their written order (conv,
LeakyReLU, max-pool) and pooled first, as it runs without gradients: the same scores, and the time of each.

    python benchmarks/encoder_order.py <run>/model.pt <image.png> [--precision bf16|fp32] [--rounds 3]

Both orders score the image's windows (stride = patch size, wholly on fabric) in chunks of 256, as
`rdcae.detect` does; each round times ten passes of each order, alternating.
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
    pooled_first = PatchScorer(detector.net, detector.score_kind, detector.score_width, precision).eval()
    net = copy.deepcopy(detector.net)
    net.encoder = torch.nn.Sequential(*net.encoder)  # the same layers, in their written order with or without gradients
    written = PatchScorer(net, detector.score_kind, detector.score_width, precision).eval()

    def run(scorer):
        return [scorer(windows[i:i + 256]) for i in range(0, len(windows), 256)]

    with torch.inference_mode():
        same = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                   for a, b in zip(run(written), run(pooled_first)))
        print(f"{len(windows)} windows, torch {precision}; scores and energies equal in both orders: {same}")
        for r in range(rounds):
            times = {}
            for name, scorer in (("written order", written), ("pooled first", pooled_first)):
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
