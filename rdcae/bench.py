"""Benchmark: `python -m rdcae.bench [dataset=... model.batch_size=... bench.epochs=...]`.

Times, on the current device, every stage of a run — patch preparation, synthetic defects,
one epoch, one block end (S-update + train AUC), a full run of the protocol, inference at
several batch sizes — with peak host and device memory, and runs the plain-PyTorch loop of
`benchmarks/reference.py` on the same patches in the same process. Prints a table of our
time / reference time per row and writes it as JSON (bench.json in the run folder).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from rdcae.config import validate
from rdcae.data.patches import build_patches
from rdcae.errors import ConfigError, DataError
from rdcae.inference import load_detector
from rdcae.metrics.classification import auc
from rdcae.metrics.operating_point import has_overlap, no_overlap
from rdcae.model.alternation import Alternation
from rdcae.model.network import NetworkSpec
from rdcae.model.score import reconstruction_error
from rdcae.noise.decorate import decorate
from rdcae.overrides import check_command_line
from rdcae.results.summary import json_safe
from rdcae.train import build, run

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "reference.py"


def reference_loop():
    """benchmarks/reference.py lives beside the package in the source tree, not inside it."""
    if not REFERENCE.is_file():
        raise FileNotFoundError(f"{REFERENCE} not found: run the benchmark from a source checkout of rdcae")
    spec = importlib.util.spec_from_file_location("rdcae_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ReferenceLoop


def device_of(cfg: DictConfig) -> torch.device:
    accelerator = str(cfg.trainer.accelerator)
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def peak_host_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def peak_device_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


class EpochClock(L.Callback):
    """Start time of every training epoch, and the duration of every block end: the clock and its
    `stop` callback sit either side of the Alternation in the trainer's callbacks, whose epoch-end
    hooks Lightning calls in that order."""

    def __init__(self, device: torch.device, alternation: Alternation) -> None:
        self.device, self.alternation, self.starts, self.block_ends = device, alternation, [], []
        self._block_start = 0.0
        clock = self

        class Stop(L.Callback):
            def on_train_epoch_end(self, trainer, module) -> None:
                sync(clock.device)
                if len(clock.alternation.history) > len(clock.block_ends):  # the Alternation ended a block
                    clock.block_ends.append(time.perf_counter() - clock._block_start)

        self.stop = Stop()

    def around(self, callbacks: list) -> None:
        """Put the clock just before the alternation and its stop just after."""
        at = callbacks.index(self.alternation)
        callbacks[at : at + 1] = [self, self.alternation, self.stop]

    def on_train_epoch_start(self, trainer, module) -> None:
        sync(self.device)
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, module) -> None:
        sync(self.device)
        self._block_start = time.perf_counter()


def with_overrides(cfg: DictConfig, **values) -> DictConfig:
    cfg = cfg.copy()
    with open_dict(cfg):
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def median(values: list[float]) -> float:
    return float(torch.tensor(values).median()) if values else float("nan")


def bench_epoch(cfg: DictConfig, device: torch.device, out: Path) -> dict:
    """Our epoch and block end: a Lightning fit of epochs + 2 epochs with one block end at the last.
    The first epoch (warm-up) and the last (block end, checkpoint) are not in the epoch median."""
    epochs = int(cfg.bench.epochs)
    cfg = with_overrides(cfg, **{"alternation.block_epochs": epochs + 2, "alternation.max_blocks": 1,
                                 "alternation.warmup_blocks": 0, "alternation.start_fraction": None,
                                 "trainer.enable_progress_bar": False})
    datamodule, module, alternation, trainer = build(cfg, out)
    clock = EpochClock(device, alternation)
    clock.around(trainer.callbacks)
    trainer.fit(module, datamodule=datamodule)
    gaps = [b - a for a, b in zip(clock.starts[1:-1], clock.starts[2:])]
    return {"epoch": median(gaps), "block_end": clock.block_ends[-1], "n_train": len(datamodule.train_x),
            "datamodule": datamodule}


def new_reference(cfg: DictConfig, datamodule, device: torch.device):
    """A fresh reference loop on the run's training set, with the run's λ, batch size, optimiser and seed."""
    return reference_loop()(datamodule.train_x, datamodule.train_synthetic, lambda_=float(cfg["lambda"]),
                            batch_size=int(cfg.model.batch_size), lr=float(cfg.model.lr),
                            weight_decay=float(cfg.model.weight_decay), seed=int(cfg.seed), device=device,
                            spec=NetworkSpec.from_config(cfg))


def bench_reference_epoch(cfg: DictConfig, datamodule, device: torch.device) -> dict:
    loop = new_reference(cfg, datamodule, device)
    loop.epoch()  # warm-up
    gaps = [timed(loop.epoch, device)[0] for _ in range(int(cfg.bench.epochs))]
    block_end, _ = timed(loop.end_block, device)
    return {"epoch": median(gaps), "block_end": block_end}


def bench_protocol(cfg: DictConfig, device: torch.device, out: Path) -> dict:
    """A whole run (fit, test, export, figures) with a fixed number of blocks, so both sides run the same
    epochs, and S-updates from the end of the warm-up on, as the reference loop makes them."""
    cfg = with_overrides(cfg, **{"alternation.auc_target": 1.0, "alternation.start_fraction": None,
                                 "trainer.enable_progress_bar": False})
    seconds, metrics = timed(lambda: run(cfg, out), device)
    return {"total": seconds, "fit": metrics["fit_seconds"], "epochs": metrics["epochs"],
            "test_auc": metrics["test"].get("auc"),
            "peak_host_gib": peak_host_gib(), "peak_device_gib": peak_device_gib(device)}


def bench_reference_protocol(cfg: DictConfig, datamodule, device: torch.device) -> dict:
    a = cfg.alternation
    loop = new_reference(cfg, datamodule, device)
    seconds, result = timed(lambda: loop.fit(int(a.block_epochs), int(a.max_blocks), int(a.warmup_blocks),
                                             auc_target=1.0), device)
    x = datamodule.test_x.to(device)
    scores = reconstruction_error(x, loop.reconstruct(x))
    y = datamodule.test_y.to(device)
    result["test_auc"] = auc(scores[y == 0], scores[y == 1])
    return {"fit": seconds, "net": loop.net, **result}


def bench_inference(detector, reference_net, batch_sizes, device: torch.device, min_seconds: float,
                    patch_shape) -> list[dict]:
    """Patches per second of the exported detector (fp32 and bf16) and of the bare reference network."""
    rows = []
    reference_net = reference_net.to(device).eval()
    for batch in batch_sizes:
        x = torch.rand(batch, *patch_shape, device=device)

        def rate(fn):
            fn()  # warm-up (oneDNN / cuDNN pick their kernels on the first call)
            calls, spent = 0, 0.0
            while spent < min_seconds or calls < 1:
                seconds, _ = timed(fn, device)
                calls, spent = calls + 1, spent + seconds
            return calls * batch / spent

        with torch.no_grad():
            reference = rate(lambda: reconstruction_error(x, reference_net(x)))
        ours = {}
        for precision in ("fp32", "bf16"):
            detector.precision = precision
            ours[precision] = rate(lambda: detector.score(x))
        detector.precision = "fp32"
        rows.append({"batch": batch, "fp32": ours["fp32"], "bf16": ours["bf16"], "reference_fp32": reference})
    return rows


def bf16_auc_change(detector, datamodule) -> float:
    """|AUC(bf16 scores) − AUC(fp32 scores)| on the test set: the accuracy cost of bf16 inference."""
    y = datamodule.test_y.to(detector.threshold.device)
    aucs = []
    for precision in ("fp32", "bf16"):
        detector.precision = precision
        scores = detector.score(datamodule.test_x)
        aucs.append(auc(scores[y == 0], scores[y == 1]))
    detector.precision = "fp32"
    return abs(aucs[1] - aucs[0])


def bench_image(cfg: DictConfig, model: Path, out: Path) -> dict:
    """Whole images end to end, as `python -m rdcae.detect` runs them: read the file, score its windows,
    build the map, draw and save the overlay. Per stride and backend: images/s, windows/s, and the share
    of windows whose decision agrees with torch fp32. The image is bench.image (a 4096×256 AITEX image,
    say), else a generated woven fabric of that size; bench.overlap as rdcae.detect's `overlap`. The torch
    backends run the network on the training device (trainer.accelerator), the exported ones on the CPU."""
    from PIL import Image

    from rdcae.data.images import read_image
    from rdcae.data.woven import generate
    from rdcae.inference.backends import on_backend
    from rdcae.inference.overlay import overlay

    b = cfg.bench
    if b.get("image"):
        path = Path(str(b.image))
    else:
        path = out / "bench_image.png"
        fabric = generate(seed=0, n_normal_images=1, n_defect_images=0, height=256, width=4096)[0].image
        Image.fromarray(fabric[:, :, 0]).save(path)
    image = read_image(path)
    overlap = b.get("overlap", False)
    if not isinstance(overlap, bool):
        raise ConfigError(f"bench.overlap={overlap} must be true or false (as rdcae.detect's overlap=)")
    if overlap and not has_overlap(load_detector(model).operating_point):
        raise ConfigError(no_overlap(f"bench.overlap=true: bench.model={model}"))
    device = device_of(cfg)
    backends = {}
    for name in b.backends:
        kind, _, precision = name.partition("_")
        try:
            on = device if kind == "torch" else torch.device("cpu")  # the exported runtimes run on the CPU
            backends[name] = on_backend(load_detector(model, map_location=on, precision=precision or "fp32"), kind,
                                        out / "model.onnx", overlap=overlap)
        except ImportError as error:
            print(f"bench: {name} skipped ({error})")
    rows = {}
    for stride in b.strides:
        reference = None
        for name, image_detector in backends.items():
            def once():
                detection = image_detector.detect(read_image(path), stride=int(stride))
                overlay(image, detection).save(out / "bench_overlay.png", compress_level=1)
                return detection

            once()  # warm-up: kernels chosen, the graph compiled
            calls, spent = 0, 0.0
            while spent < float(b.min_seconds) or calls < 2:
                seconds, detection = timed(once, device)
                calls, spent = calls + 1, spent + seconds
            flagged = detection.window_scores > detection.threshold  # (K,) the decision of every window
            reference = flagged if reference is None else reference
            rows[f"image_s{stride}_{name}"] = {"ours": calls / spent, "unit": "images/s", "windows": detection.windows,
                                               "windows_per_s": detection.windows * calls / spent,
                                               "decisions_agree": float((flagged == reference).mean())}
    return rows


def benchmark(cfg: DictConfig, out: str | Path) -> dict:
    validate(cfg)  # a bad setting fails now, not after the first rows
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = device_of(cfg)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    L.seed_everything(int(cfg.seed), verbose=False)
    results: dict = {"device": device_name(device),
                     "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": {}}
    rows = results["rows"]

    with tempfile.TemporaryDirectory() as cache:  # an empty cache: time the real preparation
        fresh = with_overrides(cfg, cache_dir=cache)
        rows["prepare_patches"] = {"ours": timed(lambda: build_patches(fresh), device)[0]}

    ours = bench_epoch(cfg, device, out / "epoch")
    datamodule = ours.pop("datamodule")
    normals = datamodule.train_x  # decorated again, as the DataModule does on the CPU
    generator = torch.Generator().manual_seed(int(cfg.seed))
    seconds, (_, synthetic) = timed(lambda: decorate(normals, float(cfg.noise_ratio), instantiate(cfg.noise),
                                                     generator), device)
    rows["synthetic_defects"] = {"ours": seconds, "count": int(synthetic.sum())}
    reference = bench_reference_epoch(cfg, datamodule, device)
    rows["epoch"] = {"ours": ours["epoch"], "reference": reference["epoch"], "n_train": ours["n_train"]}
    rows["block_end"] = {"ours": ours["block_end"], "reference": reference["block_end"]}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    protocol = bench_protocol(cfg, device, out / "protocol")
    reference_protocol = bench_reference_protocol(cfg, datamodule, device)
    rows["protocol"] = {"ours": protocol["fit"], "reference": reference_protocol["fit"],
                        "ours_with_test_and_figures": protocol["total"], "epochs": protocol["epochs"],
                        "test_auc": protocol["test_auc"], "reference_test_auc": reference_protocol["test_auc"]}
    results["peak_host_gib"], results["peak_device_gib"] = protocol["peak_host_gib"], protocol["peak_device_gib"]

    detector = load_detector(out / "protocol" / "model.pt", map_location=device)
    shape = tuple(datamodule.train_x.shape[1:])
    for row in bench_inference(detector, reference_protocol["net"], list(cfg.bench.batch_sizes), device,
                               float(cfg.bench.min_seconds), shape):
        rows[f"inference_b{row['batch']}"] = {"ours": row["fp32"], "ours_bf16": row["bf16"],
                                              "reference": row["reference_fp32"], "unit": "patches/s"}
    results["bf16_test_auc_change"] = bf16_auc_change(detector, datamodule)
    rows.update(bench_image(cfg, out / "protocol" / "model.pt", out))
    results["peak_host_gib_with_inference"] = peak_host_gib()
    (out / "bench.json").write_text(json.dumps(json_safe(results), indent=2))
    print(table(results))
    return results


def image_table(rows: dict) -> str:
    lines = ["| row | images/s | windows/s | decisions as the first backend |", "| --- | --- | --- | --- |"]
    for name, row in rows.items():
        if name.startswith("image_"):
            lines.append(f"| {name} | {row['ours']:.2f} | {row['windows_per_s']:,.0f} | {row['decisions_agree']:.4%} |")
    return "\n".join(lines)


def table(results: dict) -> str:
    lines = [f"rdcae benchmark on {results['device']} ({results['threads']} threads, torch {results['torch']})", "",
             "| row | ours | reference | ours / reference |", "| --- | --- | --- | --- |"]
    for name, row in results["rows"].items():
        unit = row.get("unit", "s")
        ours, ref = row["ours"], row.get("reference")
        ratio = f"{ours / ref:.2f}" if ref else ""
        fmt = (lambda v: f"{v:,.0f} {unit}") if unit != "s" else (lambda v: f"{v:.3f} s")
        extra = f" (bf16 {row['ours_bf16']:,.0f})" if "ours_bf16" in row else ""
        lines.append(f"| {name} | {fmt(ours)}{extra} | {fmt(ref) if ref else ''} | {ratio} |")
    p = results["rows"]["protocol"]
    lines += ["", f"protocol: {p['epochs']} epochs; "
              f"with test, export and figures {p['ours_with_test_and_figures']:.1f} s; "
              f"test AUC {p['test_auc']:.4f} (reference loop {p['reference_test_auc']:.4f})",
              f"peak host memory {results['peak_host_gib']:.2f} GiB through the protocol run, "
              f"{results['peak_host_gib_with_inference']:.2f} GiB with the inference rows"
              + (f", peak device memory {results['peak_device_gib']:.2f} GiB"
                 if results["peak_device_gib"] is not None else ""),
              f"bf16 inference changes the test AUC by {results['bf16_test_auc_change']:.4f}"]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def hydra_main(cfg: DictConfig) -> None:
    try:
        measure(cfg)
    except (ConfigError, DataError, FileNotFoundError) as error:  # bad settings or data: one line, no traceback
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def measure(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    if cfg.bench.get("model"):  # the whole-image rows alone, for a trained model
        out.mkdir(parents=True, exist_ok=True)
        rows = bench_image(cfg, Path(str(cfg.bench.model)), out)
        (out / "bench.json").write_text(json.dumps({"device": device_name(device_of(cfg)),
                                                    "threads": torch.get_num_threads(), "rows": rows}, indent=2))
        print(image_table(rows))
        return
    benchmark(cfg, out)


def main() -> None:
    """`python -m rdcae.bench`: the command-line settings checked against the benchmark's config first (a
    misspelt key, or `fabric=` without the dataset that reads it, is one line and exit code 2), then Hydra's
    run."""
    check_command_line(sys.argv[1:], "python -m rdcae.bench", config_name="bench")
    hydra_main()


if __name__ == "__main__":
    main()
