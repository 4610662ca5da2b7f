"""How far fp32 inference can go on this CPU: `python benchmarks/cpu_inference_bound.py`.

Prints the network's forward FLOPs per patch (torch's FlopCounterMode), the rate of a
4096×4096 matrix product in fp32 and bf16 (the best case for the CPU's BLAS, an upper bound
for the convolutions), and patches per second of the bare network at batch 1,024 in eager mode
and under torch.compile (with and without inductor's weight freezing), with the largest
relative difference of the compiled scores from the eager ones.
"""

from __future__ import annotations

import time

import torch
import torch._inductor.config as inductor_config
from torch.utils.flop_counter import FlopCounterMode

from rdcae.model.network import ConvAutoencoder, NetworkSpec
from rdcae.model.score import reconstruction_error


def per_second(fn, items: int, repeats: int = 5) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats * items / (time.perf_counter() - start)


def main() -> None:
    torch.manual_seed(0)
    net = ConvAutoencoder(NetworkSpec(3, 32)).eval().to(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(1, 3, 32, 32))
    flops = counter.get_total_flops()
    print(f"threads {torch.get_num_threads()}; forward {flops / 1e6:.1f} MFLOP per patch")

    a, b = torch.rand(4096, 4096), torch.rand(4096, 4096)
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        rate = per_second(lambda: x @ y, 2 * 4096**3)
        print(f"4096x4096 matrix product, {str(dtype).removeprefix('torch.')}: {rate / 1e9:.0f} GFLOP/s")

    x = torch.rand(1024, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = reconstruction_error(x, net(x))
        rate = per_second(lambda: reconstruction_error(x, net(x)), len(x))
        print(f"eager fp32, batch 1024: {rate:,.0f} patches/s ({rate * flops / 1e9:.0f} GFLOP/s)")
        for freezing in (False, True):
            inductor_config.freezing = freezing
            torch._dynamo.reset()
            start = time.perf_counter()
            compiled = torch.compile(net)
            compiled(x)
            seconds = time.perf_counter() - start
            rate = per_second(lambda: reconstruction_error(x, compiled(x)), len(x))
            diff = float(((reconstruction_error(x, compiled(x)) - eager).abs() / eager).max())
            print(f"torch.compile (freezing={freezing}), batch 1024: {rate:,.0f} patches/s "
                  f"after {seconds:.1f} s of compilation; "
                  f"largest relative score difference {diff:.1e}")
    print(f"2,000 patches/s in fp32 needs {2000 * flops / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
