"""What S holds at the end of runs trained with dataset.unmarked_defect_images: of the unmarked windows
that lie on a defect, of the other unmarked windows, and of the checked ones.

    python benchmarks/unmarked_s.py outputs/multirun/<sweep> [more run or sweep folders]

For every run folder (config.yaml, checkpoints/last.ckpt) it cuts the run's patches again
(rdcae.data.patches.build_patches: the same windows, and which of the unmarked ones touch a defect)
and reads S from the last checkpoint: a training window is held when its row of S is not zero.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from omegaconf import OmegaConf

from rdcae.data.patches import build_patches
from rdcae.paper.report import find_run_folders


def main(folders: list[str]) -> None:
    print("| run | S holds, of all windows | of the unmarked windows on a defect | of the other unmarked windows |")
    print("| --- | --- | --- | --- |")
    for run in sorted(r for folder in folders for r in find_run_folders(folder)):
        cfg = OmegaConf.load(run / "config.yaml")
        if not cfg.dataset.get("unmarked_defect_images"):
            continue
        stats = build_patches(cfg).stats
        # weights_only: the checkpoint's tensors and plain containers, nothing that runs code
        state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        held = (state["S"].flatten(1).norm(dim=1) > 0).numpy()
        start = len(held) - stats["unmarked_windows"]
        on_defect = np.zeros(len(held), bool)
        on_defect[stats["unmarked_defect_indices"]] = True
        other = np.arange(len(held)) >= start
        other &= ~on_defect
        print(f"| {run} | {held.mean():.1%} | {held[on_defect].mean():.1%} ({held[on_defect].sum()} of "
              f"{on_defect.sum()}) | {held[other].mean():.1%} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
