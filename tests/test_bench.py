"""The benchmark runs end to end in CI-sized form and reports every row."""

from __future__ import annotations

import json

import pytest
from conftest import CONF, TINY
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from rdcae.bench import benchmark

ROWS = {"prepare_patches", "synthetic_defects", "epoch", "block_end", "protocol", "inference_b1", "inference_b64",
        "image_s32_torch_fp32", "image_s32_onnx"}


def test_benchmark_writes_every_row_with_positive_numbers(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="bench", overrides=TINY + ["bench.epochs=2", "bench.batch_sizes=[1,64]",
                                                             "bench.min_seconds=0.01", "figures=false",
                                                             "bench.strides=[32]", "bench.backends=[torch_fp32,onnx]"])
    with open_dict(cfg):
        cfg.cache_dir = str(tmp_path / "cache")
    benchmark(cfg, tmp_path / "bench")
    results = json.loads((tmp_path / "bench" / "bench.json").read_text())
    rows = results["rows"]
    assert set(rows) == ROWS
    for name, row in rows.items():
        assert row["ours"] > 0, name
        if name not in ("prepare_patches", "synthetic_defects") and not name.startswith("image"):
            assert row["reference"] > 0, name
        if name.startswith("inference"):
            assert row["ours_bf16"] > 0
    assert rows["protocol"]["epochs"] == 4  # 2 blocks of 2 epochs, the AUC stop off
    assert rows["synthetic_defects"]["count"] == round(0.10 * rows["epoch"]["n_train"])
    assert results["peak_host_gib"] > 0
    image = rows["image_s32_onnx"]
    assert image["windows"] == 8 * 128  # a 4096x256 image of fabric, in 32x32 windows
    assert image["windows_per_s"] == pytest.approx(image["ours"] * image["windows"])
    assert rows["image_s32_torch_fp32"]["decisions_agree"] == 1.0 and image["decisions_agree"] >= 0.999
    assert 0 <= results["bf16_test_auc_change"] <= 1


def test_a_bad_setting_stops_the_benchmark_in_one_line_before_any_row(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "rdcae.bench", "lambda=-1", f"hydra.run.dir={tmp_path / 'b'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().startswith("error: lambda=-1")
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "b" / "bench.json").exists()


def test_a_bad_overlap_setting_of_the_image_rows_is_one_config_error_naming_it(tmp_path):
    from rdcae.bench import bench_image
    from rdcae.errors import ConfigError

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="bench", overrides=TINY + ["bench.overlap=sometimes"])
    with pytest.raises(ConfigError, match="bench.overlap=sometimes must be true or false"):
        bench_image(cfg, tmp_path / "model.pt", tmp_path)


def test_the_reference_loop_trains_the_network_the_run_asks_for():
    import torch

    from rdcae.bench import reference_loop
    from rdcae.model.network import NetworkSpec

    x, synthetic = torch.rand(32, 3, 32, 32), torch.arange(32) < 4
    paper = reference_loop()(x, synthetic, spec=NetworkSpec(3, 32, normalize=False, output="sigmoid"))
    default = reference_loop()(x, synthetic)
    assert (paper.net.normalize, paper.net.output) == (False, "sigmoid")
    assert (default.net.normalize, default.net.output) == (True, "linear")
    paper.epoch()
    out = paper.reconstruct(x)
    assert out.min() >= 0 and out.max() <= 1  # sigmoid pixels, the paper's [0, 1] range
    assert paper.fit(block_epochs=1, max_blocks=2, warmup_blocks=1)["epochs"] == 2


def test_the_benchmark_command_line_is_checked_against_its_own_config(tmp_path):
    import subprocess
    import sys

    from rdcae.errors import ConfigError
    from rdcae.overrides import check_overrides

    check_overrides(["bench.strides=[32]", "bench.model=m.pt"], "python -m rdcae.bench", config_name="bench")
    with pytest.raises(ConfigError, match=r"bench.modle=m.pt: unknown setting; did you mean bench.model=\?"):
        check_overrides(["bench.modle=m.pt"], "python -m rdcae.bench", config_name="bench")
    out = subprocess.run([sys.executable, "-m", "rdcae.bench", "fabric=03", f"hydra.run.dir={tmp_path / 'b'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: fabric=03: an AITEX fabric, but dataset=woven (the embedded fabric, the default) has no fabrics; "
        "add dataset=aitex"]
    assert not (tmp_path / "b").exists()
