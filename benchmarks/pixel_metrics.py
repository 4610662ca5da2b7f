"""How long the pixel metrics of an evaluation take, and their values, binned and exact.

    python benchmarks/pixel_metrics.py <run>/model.pt dataset=aitex data_dir=/path/to/AITEX [repeats=3]

Detects on the evaluation images of `rdcae.detect model=… dataset=…` once (the same settings), then times
pixel AUROC and AUPRO (30 % FPR) over the inspected fabric and over whole images as the evaluation computes
them, best of `repeats`, and prints each with its value with every distinct score a threshold (bins=None), the
reference the binned curves are held to; then both of each region at once (`pixel_metrics`), as the evaluation
(`rdcae.detect.evaluate`) computes them.
"""

from __future__ import annotations

import sys
import time

from rdcae.detect import AUPRO_FPR_LIMIT, dataset_items, detect_all, image_detector, parse
from rdcae.metrics.pixel import aupro, pixel_auroc, pixel_metrics


def main(argv: list[str]) -> None:
    model, settings = argv[0], [a for a in argv[1:] if not a.startswith("repeats=")]
    repeats = int(next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("repeats=")), 3))
    cfg = parse([f"model={model}", *settings, "overlays=false", "maps=false"])
    detector, model_config, *_ = image_detector(cfg)
    items, _ = dataset_items(cfg, model_config)
    _, done, _ = detect_all(detector, items, None, cfg)
    done = [(item, d) for item, d in done if not item.unlabelled and not item.unmasked]
    maps = [d.anomaly_map for _, d in done]
    masks = [item.mask for item, _ in done]
    valid = [d.fabric for _, d in done]
    print(f"{len(done)} images, {sum(int(v.sum()) for v in valid):,} fabric pixels, "
          f"{sum(m.size for m in maps):,} pixels in all")
    cases = {"pixel AUROC, fabric": lambda **bins: pixel_auroc(maps, masks, valid, **bins),
             "AUPRO, fabric": lambda **bins: aupro(maps, masks, valid, AUPRO_FPR_LIMIT, **bins),
             "pixel AUROC, whole images": lambda **bins: pixel_auroc(maps, masks, **bins),
             "AUPRO, whole images": lambda **bins: aupro(maps, masks, None, AUPRO_FPR_LIMIT, **bins)}
    total = 0.0
    for name, metric in cases.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            value = metric()
            times.append(time.perf_counter() - start)
        exact = metric(bins=None)
        total += min(times)
        print(f"{name}: {value:.6f} in {min(times):.2f} s (exact {exact:.6f}, off by {abs(value - exact):.1e})")
    print(f"the four one by one: {total:.2f} s")
    for name, region in (("fabric", valid), ("whole images", None)):  # as the evaluation computes them
        start = time.perf_counter()
        both = pixel_metrics(maps, masks, region, AUPRO_FPR_LIMIT)
        print(f"pixel AUROC and AUPRO at once, {name}: {both[0]:.6f}, {both[1]:.6f} in "
              f"{time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
