"""The torch network on one image's windows with a part's layers in their written order and as that part
runs without gradients: how far apart their scores are, and the time of each.

    python benchmarks/network_order.py <run>/model.pt <image.png> [--part encoder|decoder]
        [--precision bf16|fp32] [--rounds 3]

encoder: written order conv, LeakyReLU, max-pool, against pooled first (the same values, to the bit).
decoder: written order nearest 2× upsampling, then a 5×5 convolution, against one 3×3 convolution on the
coarse grid into four phases, pixel-shuffled (the same sums up to rounding).
Both score the image's windows (stride = patch size, wholly on fabric) in chunks of 256 in the channels-last
layout, as `rdcae.detect` does; each round times ten passes of each, alternating.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

ARRANGED = {"encoder": "pooled first", "decoder": "four phases"}


def main(model: str, image_path: str, part: str = "encoder", precision: str = "bf16", rounds: int = 3) -> None:
    from rdcae.data.images import read_image
    from rdcae.inference import load_detector
    from rdcae.inference.detector import PatchScorer
    from rdcae.inference.image import ImageDetector

    detector = load_detector(model, precision=precision)
    windows = torch.from_numpy(ImageDetector.from_detector(detector).windows(read_image(image_path))[1])
    arranged = PatchScorer(detector.net, detector.score_kind, detector.score_width, precision).eval()
    net = copy.deepcopy(detector.net)
    setattr(net, part, torch.nn.Sequential(*getattr(net, part)))  # the same layers, in their written order always
    written = PatchScorer(net, detector.score_kind, detector.score_width, precision).eval()

    def run(scorer):
        return [scorer(windows[i:i + 256].contiguous(memory_format=torch.channels_last))
                for i in range(0, len(windows), 256)]

    with torch.inference_mode():
        a, b = run(written), run(arranged)
        same = all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
        a, b = torch.cat([s for s, _ in a]), torch.cat([s for s, _ in b])
        print(f"{len(windows)} windows, torch {precision}, the {part}; scores and energies equal: {same}; scores' "
              f"largest relative difference {float(((a - b).abs() / a.abs()).max()):.1e}, the image's score "
              f"{float(a.max()):.5f} and {float(b.max()):.5f}")
        for r in range(rounds):
            times = {}
            for name, scorer in (("written order", written), (ARRANGED[part], arranged)):
                start = time.perf_counter()
                for _ in range(10):
                    run(scorer)
                times[name] = (time.perf_counter() - start) / 10 * 1000
            print(f"round {r + 1}: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in times.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("image")
    parser.add_argument("--part", default="encoder", choices=sorted(ARRANGED))
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.model, args.image, args.part, args.precision, args.rounds)
