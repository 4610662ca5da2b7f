"""Where the time of whole-image detection goes, and what the network alone runs at.

    python benchmarks/detect_profile.py <run>/model.pt <image.png> [repeats]

Per image, stage by stage (read, windows, the network, map and regions, overlay, PNG), with the
OpenVINO bf16 backend; then the exported graph alone at batch 1,024 in OpenVINO bf16 with a
dynamic batch and compiled for a static one, and the bare network (no score) exported the same way.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def rate(run, x: np.ndarray, repeats: int = 5) -> float:
    run(x)
    start = time.perf_counter()
    for _ in range(repeats):
        run(x)
    return repeats * len(x) / (time.perf_counter() - start)


def main(model: str, image_path: str, repeats: int = 10) -> None:
    import openvino as ov

    from rdcae.data.images import read_image
    from rdcae.inference import load_detector
    from rdcae.inference.image import ImageDetector, Preprocessing
    from rdcae.inference.onnx import OpenVinoScorer, export_onnx
    from rdcae.inference.overlay import overlay

    detector = load_detector(model)
    scratch = Path(tempfile.mkdtemp())
    graph = export_onnx(detector, scratch / "model.onnx")
    scorer = OpenVinoScorer(graph, "bf16")
    image_detector = ImageDetector(scorer, Preprocessing.from_config(detector.config, detector.spec),
                                   float(detector.threshold))
    stages = dict.fromkeys(["read", "windows", "network", "map and regions", "overlay", "PNG"], 0.0)
    image_detector.detect(read_image(image_path))  # warm-up
    for _ in range(repeats):
        t = time.perf_counter()
        image = read_image(image_path)
        t, stages["read"] = time.perf_counter(), stages["read"] + time.perf_counter() - t
        _, windows, _ = image_detector.windows(image)
        t, stages["windows"] = time.perf_counter(), stages["windows"] + time.perf_counter() - t
        scorer(windows)
        t, stages["network"] = time.perf_counter(), stages["network"] + time.perf_counter() - t
        detection = image_detector.detect(image)  # windows and network again, then map and regions
        whole = time.perf_counter() - t
        t = time.perf_counter()
        picture = overlay(image, detection)
        t, stages["overlay"] = time.perf_counter(), stages["overlay"] + time.perf_counter() - t
        picture.save(scratch / "overlay.png", compress_level=1)
        stages["PNG"] += time.perf_counter() - t
        stages["map and regions"] += whole
    stages["map and regions"] -= stages["windows"] + stages["network"]
    print(f"{len(windows)} windows per image; seconds per image over {repeats} images:")
    for name, seconds in stages.items():
        print(f"  {name:16s} {seconds / repeats:.3f}")

    x = np.random.default_rng(0).integers(0, 256, (1024, *windows.shape[1:]), dtype=np.uint8)
    core = ov.Core()
    static = core.read_model(str(graph))
    static.reshape({"patches": list(x.shape)})
    compiled = core.compile_model(static, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    net = detector.net.eval().float().to(memory_format=torch.contiguous_format)
    torch.onnx.export(net, (torch.rand(1024, *windows.shape[1:]),), str(scratch / "net.onnx"), dynamo=False,
                      opset_version=17)
    bare = core.compile_model(str(scratch / "net.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    xf = x.astype(np.float32) / 255
    print("windows/s at batch 1,024, OpenVINO bf16:")
    print(f"  graph, dynamic batch   {rate(scorer, x):,.0f}")
    print(f"  graph, static batch    {rate(lambda a: compiled(a), x):,.0f}")
    print(f"  bare network, no score {rate(lambda a: bare(a), xf):,.0f}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
