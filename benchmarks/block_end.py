"""What a block end's passes cost on the CPU, by precision and chunk size:
`python benchmarks/block_end.py [overrides]`.

Trains the run the overrides describe for `alternation.max_blocks` blocks (default here: 3 blocks of
one epoch, the first S-update after block 2 as in train.yaml), then times one reconstruction of its
whole training set (the pass every block end makes for the S-update and the train AUC) in fp32 and
under bf16 autocast, in chunks of 256, 1,024 and 4,096 patches, and compares the two precisions:
the largest relative difference of the residual norms ‖x − D(E(x))‖₂ over the training set, and the
validation AUC (held-out synthetic defects against the same calibration patches clean) of each
score in each precision. For example

    python benchmarks/block_end.py dataset=aitex fabric=00 data_dir=/path/to/AITEX
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from rdcae.bench import median, timed
from rdcae.metrics.classification import aucs_by_kind
from rdcae.train import build

CONF = Path(__file__).resolve().parents[1] / "conf"
CPU = torch.device("cpu")


def seconds(fn, repeats: int = 3) -> float:
    """The median time of `repeats` calls after one warm-up call."""
    fn()
    return median([timed(fn, CPU)[0] for _ in range(repeats)])


def main(overrides: list[str]) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["alternation.max_blocks=3", "alternation.block_epochs=1",
                                          "alternation.warmup_blocks=2", "trainer.enable_progress_bar=false",
                                          "figures=false", *overrides])
    with tempfile.TemporaryDirectory() as out:
        datamodule, module, alternation, trainer = build(cfg, Path(out))
        trainer.fit(module, datamodule=datamodule)
    module.to(CPU).eval()
    precisions = {"fp32": contextlib.nullcontext, "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16)}
    X = datamodule.train_x
    print(f"{len(X)} training patches, {alternation.blocks} blocks trained, {torch.get_num_threads()} threads")
    print("| precision | chunk | training-set pass (s) |\n| --- | --- | --- |")
    for name, context in precisions.items():
        for chunk in (256, 1024, 4096):
            def one_pass():
                with context():
                    module.reconstruct(X, chunk)
            print(f"| {name} | {chunk:,} | {seconds(one_pass):.2f} |", flush=True)
    norms, aucs = {}, {}
    for name, context in precisions.items():
        with context():
            norms[name] = (X - module.reconstruct(X)).flatten(1).norm(dim=1)
            head = module.scores_by_kind(datamodule.validation_normal_x)[1]
            aucs[name] = aucs_by_kind(head, module.scores_by_kind(datamodule.validation_x)[1])
    difference = float(((norms["bf16"] - norms["fp32"]).abs() / norms["fp32"]).max())
    print(f"largest relative difference of ‖x − x̂‖₂, bf16 against fp32: {difference:.2e}")
    for name in precisions:
        print(f"validation AUC {name}: " + ", ".join(f"{kind} {value:.4f}" for kind, value in aucs[name].items()))


if __name__ == "__main__":
    main(sys.argv[1:])
