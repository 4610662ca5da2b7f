"""int8 against bf16 for the exported detector on a CPU: its convolutions quantized statically (onnxruntime's
QDQ quantizer, weights per channel, activations symmetric, calibrated on windows of three defect-free
images), run in onnxruntime and in OpenVINO; against the fp32 graph in onnxruntime and OpenVINO bf16.

    python benchmarks/int8_inference.py <run>/model.pt /path/to/AITEX [--fabric 03]

The defect-free images are the fabric's in NODefect_images; the first three calibrate, the last five and the
fabric's defect images are scored. Per runtime: windows/s on one image's windows (timed for 3 s), the
largest and median relative score difference from torch fp32 over every window scored, the windows whose
decision differs at the image threshold and at the patch threshold, and the images whose verdict is torch
fp32's."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

RUNTIME_BATCH = 256  # OpenVINO's static batch, as rdcae's OpenVinoScorer compiles it; onnxruntime's chunks


def main() -> None:
    import onnxruntime as ort
    import openvino as ov
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from rdcae.data.images import read_image
    from rdcae.inference import load_detector
    from rdcae.inference.image import ImageDetector
    from rdcae.inference.onnx import export_onnx, torch_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("aitex", type=Path)
    parser.add_argument("--fabric", default="03")
    args = parser.parse_args()
    detector = load_detector(args.model)
    image_detector = ImageDetector.from_detector(detector)
    clean = sorted((args.aitex / "NODefect_images").glob(f"*/*_{args.fabric}.png"))
    defect = sorted((args.aitex / "Defect_images").glob(f"*_{args.fabric}.png"))

    def windows(paths):
        return [image_detector.windows(image_detector.check_image(read_image(p), str(p)))[1] for p in paths]

    calibration, scored = np.concatenate(windows(clean[:3])), windows(clean[-5:] + defect)
    print(f"{len(clean)} defect-free and {len(defect)} defect images of fabric {args.fabric}; "
          f"{sum(map(len, scored)):,} windows of {len(scored)} images scored")
    scratch = Path(tempfile.mkdtemp())
    graph = export_onnx(detector, scratch / "model.onnx")
    quant_pre_process(str(graph), str(scratch / "pre.onnx"), skip_symbolic_shape=True)
    sample = calibration[np.random.default_rng(0).choice(len(calibration), min(2048, len(calibration)), replace=False)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.parts = iter({"patches": sample[i : i + RUNTIME_BATCH]} for i in range(0, len(sample), RUNTIME_BATCH))

        def get_next(self):
            return next(self.parts, None)

    graphs = {"fp32": graph}
    for name, method, extra in (("int8 min-max", CalibrationMethod.MinMax, {}),
                                ("int8 99.99 %", CalibrationMethod.Percentile, {"CalibPercentile": 99.99})):
        graphs[name] = scratch / f"{name.split()[1]}.onnx"
        quantize_static(str(scratch / "pre.onnx"), str(graphs[name]), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv", "ConvTranspose"], per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                        extra_options={**extra, "ActivationSymmetric": True})
    core = ov.Core()

    def on_openvino(path, precision):
        model = core.read_model(str(path))
        model.reshape({model.inputs[0].get_any_name(): [RUNTIME_BATCH, *calibration.shape[1:]]})
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})

        def run(x):
            out = []
            for i in range(0, len(x), RUNTIME_BATCH):
                part = x[i : i + RUNTIME_BATCH]
                padded = np.concatenate([part, np.zeros((RUNTIME_BATCH - len(part), *part.shape[1:]), part.dtype)])
                out.append(compiled(padded)["score"][: len(part)])
            return np.concatenate(out)
        return run

    def on_onnxruntime(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: np.concatenate([session.run(["score"], {"patches": x[i : i + 1024]})[0]
                                         for i in range(0, len(x), 1024)])

    runtimes = {"onnxruntime fp32": on_onnxruntime(graph), "OpenVINO bf16": on_openvino(graph, "bf16")}
    for name in ("int8 min-max", "int8 99.99 %"):
        runtimes[f"onnxruntime {name}"] = on_onnxruntime(graphs[name])
        runtimes[f"OpenVINO {name}"] = on_openvino(graphs[name], "bf16")
    every = np.concatenate(scored)
    reference = torch_scores(detector, every)
    image_threshold, patch_threshold = detector.image_threshold(), float(detector.threshold)
    ends = np.cumsum([len(w) for w in scored])[:-1]
    print("| runtime | windows/s | largest relative difference | median | windows decided otherwise at the image "
          "threshold | at the patch threshold | verdicts as torch fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, run in runtimes.items():
        scores = run(every)
        one = scored[0]
        run(one)
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < 3:
            run(one)
            n += 1
        rate = n * len(one) / (time.perf_counter() - start)
        relative = np.abs(scores - reference) / reference
        verdicts = sum((a.max() > image_threshold) == (b.max() > image_threshold)
                       for a, b in zip(np.split(scores, ends), np.split(reference, ends)))
        print(f"| {name} | {rate:,.0f} | {relative.max():.3f} | {np.median(relative):.4f} | "
              f"{int(((scores > image_threshold) != (reference > image_threshold)).sum())} | "
              f"{int(((scores > patch_threshold) != (reference > patch_threshold)).sum())} | "
              f"{verdicts} of {len(scored)} |")


if __name__ == "__main__":
    main()
