"""Nothing rdcae loads runs code: crafted checkpoints and patch caches are refused or rebuilt, naming the file."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, compose_config

from rdcae.config import load_checkpoint
from rdcae.data.patches import cache_key, prepare_patches
from rdcae.errors import ConfigError


class _RunsCode:
    """Unpickling this creates `marker`: the proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_before_lightning_sees_it(tmp_path):
    from rdcae.train import run

    marker = tmp_path / "code_ran"
    for ckpt, write in ((tmp_path / "torch.ckpt", lambda p, obj: torch.save(obj, p)),
                        (tmp_path / "pickle.ckpt", lambda p, obj: p.write_bytes(pickle.dumps(obj)))):
        write(ckpt, {"state_dict": {}, "config": _RunsCode(marker)})
        with pytest.raises(ConfigError, match=rf"{ckpt.name}: not a safe rdcae checkpoint.*nothing in it ran"):
            run(compose_config(TINY + [f"ckpt_path={ckpt}"], tmp_path), tmp_path / "run")
        assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", bytes(range(256)) * 16],
                         ids=["zero_bytes", "truncated_zip", "random_bytes"])
def test_a_damaged_checkpoint_is_named_and_the_earlier_one_beside_it_offered(tmp_path, content):
    (tmp_path / "epoch009.ckpt").write_bytes(b"")
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(content)
    refused = r"last.ckpt: (the checkpoint is damaged|not a safe).*resume from .*epoch009.ckpt"
    with pytest.raises(ConfigError, match=refused):
        load_checkpoint(ckpt)


def test_a_patch_cache_that_would_run_code_is_rebuilt_without_running_it(tmp_path, caplog):
    cfg = compose_config(TINY, tmp_path)
    first = prepare_patches(cfg)
    path = Path(cfg.cache_dir) / f"{cfg.dataset.name}-{cache_key(cfg)}.npz"
    marker = tmp_path / "code_ran"
    crafted = np.empty(1, dtype=object)
    crafted[0] = _RunsCode(marker)
    np.savez(path, train_normal=crafted)  # an object array: np.save pickles it
    with caplog.at_level(logging.WARNING):
        again = prepare_patches(cfg)
    assert not marker.exists()
    assert str(path) in caplog.text and "rebuilding" in caplog.text
    assert np.array_equal(again.train_normal, first.train_normal)


def test_a_corrupted_patch_cache_is_rebuilt_with_a_warning_naming_it(tmp_path, caplog):
    cfg = compose_config(TINY, tmp_path)
    first = prepare_patches(cfg)
    path = Path(cfg.cache_dir) / f"{cfg.dataset.name}-{cache_key(cfg)}.npz"
    data = bytearray(path.read_bytes())
    data[100:4196] = bytes(4096)  # 4 KB zeroed inside the zip
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = prepare_patches(cfg)
    assert str(path) in caplog.text
    assert np.array_equal(again.test_defect, first.test_defect)


def test_a_checkpoint_with_4_kb_flipped_inside_is_found_damaged_on_resume(tmp_path):
    from rdcae.train import run

    common = TINY + ["alternation.max_blocks=1"]
    run(compose_config(common, tmp_path), tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["state_digest"]  # an intact checkpoint loads and carries its digest
    checkpoint = torch.load(last, weights_only=True)
    data = bytearray(last.read_bytes())
    s = checkpoint["state_dict"]["S"].numpy().tobytes()  # flip 4 KB inside the stored S (all zeros here: any bytes)
    start = data.find(s[:4096]) if any(s[:4096]) else data.find(bytes(4096))
    assert start > 0
    data[start:start + 4096] = bytes(b ^ 0xFF for b in data[start:start + 4096])
    last.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"last.ckpt: the checkpoint is damaged: its weights or S differ"):
        run(compose_config(common + ["alternation.max_blocks=2", f"ckpt_path={last}"], tmp_path), tmp_path / "resumed")


def test_a_report_folder_whose_yaml_would_run_code_is_skipped_without_running_it(tmp_path):
    from rdcae.paper.report import ReportError, load_runs

    marker = tmp_path / "code_ran"
    run_folder = tmp_path / "sweep" / "0"
    (run_folder / ".hydra").mkdir(parents=True)
    (run_folder / "metrics.json").write_text("{}")
    crafted = f"!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]\n"
    (run_folder / "config.yaml").write_text(crafted)
    (run_folder / ".hydra" / "overrides.yaml").write_text(crafted)
    with pytest.warns(UserWarning, match="cannot be read"), pytest.raises(ReportError, match="no finished runs"):
        load_runs([tmp_path / "sweep"])
    assert not marker.exists()


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path):
    import subprocess
    import sys

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = subprocess.run([sys.executable, "-m", "rdcae.train", f"hydra.run.dir={blocker / 'run'}"], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"error: hydra.run.dir={blocker / 'run'}: cannot make the output folder "
                                               "there (Not a directory); give hydra.run.dir= a writable place"]


def test_a_cache_folder_that_cannot_be_written_only_costs_the_cache(tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = compose_config(TINY, tmp_path)
    cfg.cache_dir = str(blocker / "cache")
    with caplog.at_level(logging.WARNING):
        patches = prepare_patches(cfg)
    assert len(patches.train_normal) > 0
    assert "cannot write the patch cache" in caplog.text and str(blocker) in caplog.text


def test_a_symlink_loop_in_a_dataset_folder_is_not_followed(tmp_path):
    from test_bad_inputs import config, layout

    from rdcae.detect import input_items
    from rdcae.train import build

    root = layout(tmp_path / "aitex")
    (root / "NODefect_images" / "roll" / "loop").symlink_to(root / "NODefect_images", target_is_directory=True)
    datamodule, *_ = build(config(root, tmp_path), tmp_path / "run")
    assert datamodule.patches.stats["images"]["normal"] == 2
    assert len(input_items(str(root / "NODefect_images"))) == 2  # rdcae.detect's folder search does not loop either
