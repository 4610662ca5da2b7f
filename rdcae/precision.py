"""`precision=auto`: what a run trains in (`trainer.precision`), and what detection scores in
(`rdcae.detect precision=`), on the machine it runs on."""

from __future__ import annotations

import torch

AUTO = "auto"


def training_precision(accelerator: str) -> str:
    """bfloat16 autocast where the device computes bfloat16 natively (a CUDA GPU that supports it; a
    CPU with AMX or AVX-512 BF16), where it shortens an epoch (docs/PERFORMANCE.md); fp32 elsewhere,
    where bfloat16 would be emulated and slower."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if cuda_computes_bf16() else "32-true"
    if accelerator in ("auto", "cpu"):
        checks = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
        return "bf16-mixed" if any(check() for check in checks if check is not None) else "32-true"
    return "32-true"


def cuda_computes_bf16(index: int | None = None) -> bool:
    """Whether CUDA GPU `index` (default: the current one) computes bfloat16 natively (Ampere and later),
    not by emulation, which PyTorch also counts as support by default."""
    with torch.cuda.device(torch.cuda.current_device() if index is None else index):
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # a PyTorch that counts no emulation
            return torch.cuda.is_bf16_supported()


def trainer_precision(trainer_cfg) -> str:
    """The Lightning precision of a `trainer` config: its own, or the machine's for `auto`."""
    precision = trainer_cfg.get("precision", "32-true")
    if str(precision) != AUTO:
        return precision
    return training_precision(str(trainer_cfg.get("accelerator", "auto")))


def detection_precision(setting: str, backend: str, device: str | torch.device = "cpu") -> str:
    """The precision `rdcae.detect` scores in: `setting` ("fp32" or "bf16") as given, or for "auto" bf16
    where the runtime computes it natively (PyTorch on `device` as for training; OpenVINO on a CPU it
    lists BF16 for) and fp32 elsewhere, and always for onnxruntime, which runs the graph in fp32."""
    if setting != AUTO:
        return setting
    if backend == "onnx":
        return "fp32"
    if backend == "openvino":
        try:
            import openvino as ov
        except ImportError:
            return "fp32"  # the backend itself then says how to install it
        return "bf16" if openvino_computes_bf16(ov.Core()) else "fp32"
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_available() and cuda_computes_bf16(device.index) else "fp32"
    return "bf16" if training_precision("cpu") == "bf16-mixed" else "fp32"


def openvino_computes_bf16(core) -> bool:
    """Whether OpenVINO (`core`, an openvino.Core) lists bf16 arithmetic for this CPU."""
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:  # an OpenVINO that cannot list the CPU's capabilities
        return False
