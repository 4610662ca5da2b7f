"""End-to-end runs of the real Hydra config, shrunk to seconds."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_TRAINING, compose_config, load_checkpoint
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rdcae.errors import ConfigError
from rdcae.inference import load_detector
from rdcae.train import build, run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny training run shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("run")
    cfg = compose_config(TINY + ["alternation.max_blocks=3", "alternation.block_epochs=3",
                                 "alternation.warmup_blocks=1"], out)
    return cfg, out, run(cfg, out)


def test_run_writes_metrics_checkpoints_model_and_figures(tiny_run):
    cfg, out, metrics = tiny_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["blocks"] == metrics["blocks"] >= 1
    for key in ("auc", "f1", "accuracy", "tp", "fp", "tn", "fn"):
        assert key in saved["test"]
    counts = saved["test"]
    assert counts["tp"] + counts["fn"] == saved["patches"]["patches"]["test_defect"] > 0
    assert counts["tn"] + counts["fp"] == saved["patches"]["patches"]["test_normal"]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert not list((out / "checkpoints").glob("*.tmp"))  # written beside, renamed into place
    assert (out / "config.yaml").is_file()
    for name in ("fig4a_train_xls", "fig4b_test_xr", "roc_test", "score_histogram"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    overlays = sorted((out / "figures").glob("detect_*.png"))  # whole-image detection on the run's own defect images
    assert len(overlays) == min(3, saved["patches"]["images"]["defect"])
    width, height = Image.open(overlays[0]).size  # the image, and its caption in a strip below where it is small
    assert width >= cfg.dataset.width and height >= cfg.dataset.height


def test_tiny_run_beats_chance_on_synthetic_data(tiny_run):
    _, _, metrics = tiny_run
    assert metrics["test"]["auc"] > 0.6


def test_without_calibration_patches_the_threshold_is_the_quantile_of_normal_training_errors(tmp_path):
    out = tmp_path
    cfg = compose_config(TINY + ["dataset.n_calibration=0"], out)
    metrics = run(cfg, out)
    assert metrics["threshold_from"] == "normal training patches"
    assert math.isnan(metrics["validation_auc"])  # no calibration patches, no held-out synthetic defects
    datamodule, module, _, _ = build(cfg, out / "rebuild")
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    errors = module.score(datamodule.train_x)[~datamodule.train_synthetic]
    expected = torch.quantile(errors, cfg.operating_point.quantile)
    assert math.isclose(metrics["threshold"], float(expected), rel_tol=1e-5)
    above = int((errors > metrics["threshold"]).sum())
    assert above <= max(1, math.ceil((1 - cfg.operating_point.quantile) * len(errors)))


def test_per_defect_image_metrics_cover_every_defect_tile(tiny_run):
    cfg, out, metrics = tiny_run
    rows = metrics["per_defect_image"]
    assert sum(r["tiles"] for r in rows) == metrics["patches"]["patches"]["test_defect"]
    assert sum(r["detected"] for r in rows) == metrics["test"]["tp"]
    assert all(0 <= r["auc"] <= 1 and r["image"].startswith("woven://") for r in rows)
    assert (out / "figures" / "hardest_test_patches.png").stat().st_size > 1000


def test_test_pass_keeps_the_scores_of_every_test_patch_in_order(tiny_run):
    cfg, out, metrics = tiny_run
    datamodule, module, _, trainer = build(cfg, out / "rescore")
    load_checkpoint(module, out / "checkpoints" / "last.ckpt")  # weights, S, threshold and the score it chose
    trainer.test(module, datamodule=datamodule, verbose=False)
    assert module.test_scores.shape == datamodule.test_y.shape
    torch.testing.assert_close(module.test_scores, module.score(datamodule.test_x).cpu())
    assert int((module.test_scores[datamodule.test_y == 1] > metrics["threshold"]).sum()) == metrics["test"]["tp"]


def test_validation_auc_scores_fresh_defects_on_the_calibration_patches_against_the_clean_ones(tiny_run):
    cfg, out, metrics = tiny_run
    datamodule, module, _, trainer = build(cfg, out / "revalidate")
    load_checkpoint(module, out / "checkpoints" / "last.ckpt")
    datamodule.setup()
    calibration, validation = datamodule.calibration_x, datamodule.validation_x
    assert 0 < len(validation) <= len(calibration)
    assert not any(torch.equal(v, c) for v in validation for c in calibration)  # every one carries a defect
    with trainer.precision_plugin.forward_context():  # a block end scores in the training precision
        clean, decorated = module.score(calibration).cpu(), module.score(validation).cpu()
    expected = float((decorated[:, None] > clean[None]).float().mean()
                     + 0.5 * (decorated[:, None] == clean[None]).float().mean())
    assert metrics["validation_auc"] == pytest.approx(expected, abs=1e-4)
    assert [r["validation_auc"] for r in metrics["history"]][-1] == metrics["validation_auc"]
    rebuilt, _, _, _ = build(cfg, out / "revalidate2")
    rebuilt.setup()
    torch.testing.assert_close(rebuilt.validation_x, validation)  # the same defects on every rebuild


def test_the_held_out_synthetic_defects_decorate_the_first_calibration_patches_only(tmp_path, monkeypatch):
    import rdcae.data.datamodule as datamodule_module

    monkeypatch.setattr(datamodule_module, "VALIDATION_SIZE", 20)
    datamodule, _, _, _ = build(compose_config(TINY, tmp_path), tmp_path)
    assert len(datamodule.calibration_x) == 60 and len(datamodule.validation_x) == 20
    changed = (datamodule.validation_x != datamodule.calibration_x[:20]).flatten(1).any(1)
    assert changed.all()  # each of the first 20, and only those, carries a defect


def test_the_final_threshold_uses_every_calibration_patch_and_the_validation_auc_the_decorated_ones_clean(
        tmp_path, monkeypatch):
    import rdcae.data.datamodule as datamodule_module
    from rdcae.metrics.classification import auc

    monkeypatch.setattr(datamodule_module, "VALIDATION_SIZE", 20)
    cfg = compose_config(TINY + ["alternation.max_blocks=2", "figures=false"], tmp_path)
    metrics = run(cfg, tmp_path)
    datamodule, module, _, _ = build(cfg, tmp_path / "rebuild")
    load_checkpoint(module, tmp_path / "checkpoints" / "last.ckpt")
    calibration = module.score(datamodule.calibration_x)  # all 60
    assert metrics["threshold"] == pytest.approx(float(torch.quantile(calibration, cfg.operating_point.quantile)),
                                                 rel=1e-5)
    assert metrics["validation_auc"] == pytest.approx(auc(calibration[:20], module.score(datamodule.validation_x)),
                                                      abs=1e-6)


def test_checkpoint_holds_S_threshold_and_resolved_config(tiny_run):
    cfg, out, metrics = tiny_run
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    S = ckpt["state_dict"]["S"]
    assert S.shape == (metrics["n_train"], cfg.channels, cfg.patch_size, cfg.patch_size)
    assert S.abs().sum() > 0  # the prox left some residual in S
    assert math.isclose(float(ckpt["state_dict"]["threshold"]), metrics["threshold"], rel_tol=1e-6)
    assert ckpt["hyper_parameters"]["lambda_"] == cfg["lambda"]
    assert ckpt["config"]["seed"] == cfg.seed and ckpt["config"]["dataset"]["n_normal"] == cfg.dataset.n_normal


def test_exported_model_loads_with_weights_only_and_reproduces_scores(tiny_run):
    cfg, out, metrics = tiny_run
    detector = load_detector(out / "model.pt")
    assert math.isclose(float(detector.threshold), metrics["threshold"], rel_tol=1e-6)
    assert detector.config["lambda"] == cfg["lambda"]
    datamodule, module, _, _ = build(cfg, out / "rebuild2")
    load_checkpoint(module, out / "checkpoints" / "last.ckpt")
    torch.testing.assert_close(detector.score(datamodule.test_x), module.score(datamodule.test_x))


def test_strip_score_sets_the_threshold_and_travels_with_the_exported_model(tmp_path):
    cfg = compose_config(TINY + ["model.score=strip", "model.score_width=2", "alternation.max_blocks=2",
                                 "figures=false"], tmp_path)
    metrics = run(cfg, tmp_path)
    datamodule, module, _, _ = build(cfg, tmp_path / "rebuild")
    load_checkpoint(module, tmp_path / "checkpoints" / "last.ckpt")
    assert module.hparams.score == "strip" and module.hparams.score_width == 2
    errors, scores = module.error_and_score(datamodule.calibration_x)
    assert (scores < errors).all()  # a strip holds part of the residual only
    assert math.isclose(metrics["threshold"], float(torch.quantile(scores, cfg.operating_point.quantile)), rel_tol=1e-5)
    # still ‖x − x̂‖₂
    assert metrics["history"][-1]["calibration_error_mean"] == pytest.approx(float(errors.mean()), rel=1e-5)
    detector = load_detector(tmp_path / "model.pt")
    assert (detector.score_kind, detector.score_width) == ("strip", 2)
    torch.testing.assert_close(detector.score(datamodule.test_x), module.score(datamodule.test_x))


def test_auto_score_takes_the_score_with_the_higher_validation_auc_everywhere(tmp_path):
    cfg = compose_config(TINY + ["model.score=auto", "alternation.max_blocks=2", "figures=false"], tmp_path)
    metrics = run(cfg, tmp_path)
    last = metrics["history"][-1]
    aucs = last["validation_aucs"]
    assert set(aucs) == {"norm", "strip"}
    best = "strip" if aucs["strip"] > aucs["norm"] else "norm"
    assert metrics["score"] == last["score"] == best and metrics["validation_auc"] == aucs[best]
    datamodule, module, _, _ = build(cfg, tmp_path / "rebuild")
    load_checkpoint(module, tmp_path / "checkpoints" / "last.ckpt")
    assert module.score_kind == best  # the choice survives in the checkpoint
    assert math.isclose(metrics["threshold"],
                        float(torch.quantile(module.score(datamodule.calibration_x), cfg.operating_point.quantile)),
                        rel_tol=1e-5)
    detector = load_detector(tmp_path / "model.pt")
    assert detector.score_kind == best
    torch.testing.assert_close(detector.score(datamodule.test_x), module.score(datamodule.test_x))


def test_auto_score_prefers_the_strip_for_line_defects_and_the_norm_on_ties():
    from rdcae.metrics.classification import aucs_by_kind
    from rdcae.model.robust import RobustAutoencoder
    from rdcae.noise import LineNoise

    module = RobustAutoencoder(n_train=1, network={"channels": 1, "patch_size": 32}, score="auto")
    module.reconstruct = lambda x: torch.full_like(x, 0.5)  # a network that answers the mean patch
    g = torch.Generator().manual_seed(0)
    normal = 0.5 + 0.05 * torch.randn(300, 1, 32, 32, generator=g)
    lines, _ = LineNoise(width=(2, 4), length=(1.0, 1.0), contrast=(0.5, 1.0))(normal, g)
    aucs = aucs_by_kind(module.scores_by_kind(normal)[1], module.scores_by_kind(lines)[1])
    assert aucs["strip"] > aucs["norm"] + 0.03  # the line's residual is whole in one strip, with a quarter of the noise
    assert module.choose_score(aucs) == "strip" and module.score_kind == "strip"
    assert module.choose_score({"norm": 0.8, "strip": 0.8}) == "norm"
    assert module.choose_score({"norm": math.nan, "strip": math.nan}) == "norm"
    fixed = RobustAutoencoder(n_train=1, network={"channels": 1, "patch_size": 32}, score="norm")
    assert fixed.choose_score({"norm": 0.5, "strip": 0.9}) == "norm"  # only auto chooses


@pytest.mark.parametrize("override", ["dataset.n_calibration=0", "noise=none"])
def test_auto_score_without_held_out_synthetic_defects_says_so_and_keeps_the_norm(tmp_path, override):
    with pytest.warns(UserWarning, match="model.score=auto has no held-out synthetic defects"):
        metrics = run(compose_config(TINY + ["model.score=auto", "alternation.max_blocks=1", "figures=false", override],
                                     tmp_path), tmp_path)
    assert metrics["score"] == "norm" and metrics["history"][-1]["validation_aucs"] == {}


def test_tensorboard_has_block_scalars_images_and_hparams(tiny_run):
    _, out, metrics = tiny_run
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("block/train_auc", "block/loss", "block/s_nonzero_fraction", "block/s_l21", "block/threshold",
                "train/loss", "test/auc"):
        assert tag in scalars, tag
    assert len(events.Scalars("block/train_auc")) == metrics["blocks"]
    images = set(events.Tags()["images"])
    assert {"fig4a_train_xls", "fig4b_test_xr", "roc_test"} <= images
    detected = sorted(tag for tag in images if tag.startswith("detect/"))  # every figure's, the last one too
    assert detected and detected == sorted(f"detect/{p.stem[len('detect_'):]}" for p in (out / "figures").glob(
        "detect_*.png"))
    plugin_files = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert any(b"hparams" in f.read_bytes() for f in plugin_files)
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert "hparam/auc" in scalars and "hparam/validation_auc" in scalars  # the final metrics beside the hparams


def test_the_hparams_hold_what_the_command_line_set_and_the_score_the_run_used():
    from rdcae.results.summary import hparams

    overrides = ["alternation.max_blocks=5", "model=dcae", "data_dir=/data", "+trainer.limit_train_batches=0.5",
                 "hydra.sweep.dir=/sweep", "lambda=2.5"]
    cfg = compose_config(overrides)
    flat = hparams(cfg, overrides, score="strip")
    assert flat["alternation.max_blocks"] == 5 and flat["model"] == "dcae" and flat["lambda"] == 2.5
    assert flat["trainer.limit_train_batches"] == 0.5 and flat["score"] == "strip"
    assert not {"data_dir", "hydra.sweep.dir"} & set(flat)  # where, not what
    assert hparams(cfg)["score"] == str(cfg.model.score)


def test_resume_from_checkpoint_gives_the_same_result(tmp_path):
    common = TINY + ["alternation.block_epochs=2", "alternation.auc_target=1.0"]
    full = run(compose_config(common + ["alternation.max_blocks=2"], tmp_path), tmp_path / "full")
    first = run(compose_config(common + ["alternation.max_blocks=1"], tmp_path), tmp_path / "first")
    assert first["blocks"] == 1
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = run(compose_config(common + ["alternation.max_blocks=2", f"ckpt_path={last}"], tmp_path),
                  tmp_path / "resumed")
    assert resumed["blocks"] == 2
    events = EventAccumulator(str(tmp_path / "resumed" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()  # the resumed run's TensorBoard holds the block before the checkpoint too
    assert [e.step for e in events.Scalars("block/train_auc")] == [1, 2]
    assert math.isclose(resumed["threshold"], full["threshold"], rel_tol=1e-5)
    for key in ("auc", "f1", "accuracy"):
        assert math.isclose(resumed["test"][key], full["test"][key], abs_tol=1e-6)


def test_s_updates_wait_until_few_training_errors_are_above_lambda(tmp_path):
    # λ far below every error: the first prox would put every sample into S, so it never starts
    waiting = run(compose_config(TINY + ["lambda=0.001", "alternation.start_fraction=0.5"], tmp_path),
                  tmp_path / "waiting")
    assert all(not r["s_updated"] and r["above_lambda_fraction"] > 0.5 and r["s_nonzero_fraction"] == 0
               for r in waiting["history"])
    assert "S was never updated" in waiting["stop_reason"] and "start_fraction=0.5" in waiting["stop_reason"]
    assert "more alternation.max_blocks lets it" in waiting["stop_reason"]  # what to do about it
    ckpt = torch.load(tmp_path / "waiting" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert torch.all(ckpt["state_dict"]["S"] == 0)
    # with no wait (null, the paper's schedule) the same λ updates S from the first block on
    eager = run(compose_config(TINY + ["lambda=0.001"], tmp_path), tmp_path / "eager")
    assert all(r["s_updated"] and r["s_nonzero_fraction"] > 0.5 for r in eager["history"])
    # a λ above every error lets the S-updates start at once, and S stays zero
    easy = run(compose_config(TINY + ["lambda=1000", "alternation.start_fraction=0.0"], tmp_path), tmp_path / "easy")
    assert all(r["s_updated"] and r["above_lambda_fraction"] == 0 and r["s_nonzero_fraction"] == 0
               for r in easy["history"])


def test_s_fraction_keeps_that_share_of_the_samples_in_S_whatever_lambda(tmp_path):
    # λ above every error: with the fixed λ S stays zero (previous test); with s_fraction each
    # S-update takes the λ that leaves a quarter of the residuals above it
    held = run(compose_config(TINY + ["lambda=1000", "alternation.start_fraction=0.0", "alternation.s_fraction=0.25"],
                              tmp_path), tmp_path / "held")
    for r in held["history"]:
        assert r["s_updated"] and r["above_lambda_fraction"] == 0  # the start rule still weighs the fixed λ
        assert 0.2 <= r["s_nonzero_fraction"] <= 0.3 and 0 < r["s_lambda"] < 1000
    S = torch.load(tmp_path / "held" / "checkpoints" / "last.ckpt", map_location="cpu",
                   weights_only=True)["state_dict"]["S"]
    assert 0.2 <= float((S.flatten(1).norm(dim=1) > 0).float().mean()) <= 0.3


def test_on_real_fabric_the_s_updates_wait_while_the_network_answers_the_mean_patch(tmp_path, aitex_dir):
    common = ["dataset=aitex", "fabric=03", f"data_dir={aitex_dir}", "alternation.block_epochs=1",
              "alternation.max_blocks=2", "alternation.warmup_blocks=0", "trainer.accelerator=cpu",
              "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "figures=false",
              "dataset.n_calibration=0", "dataset.calibration_images=0",
              "dataset.n_train=null"]  # the split's 1,120 training windows: seconds
    ours = run(compose_config(common, tmp_path), tmp_path / "ours")
    eager = run(compose_config(common + ["alternation.start_fraction=null"], tmp_path), tmp_path / "eager")
    # two epochs in, fabric 03's errors are all far above λ = 1.6 (the network answers about the mean patch) ...
    assert all(r["above_lambda_fraction"] > 0.9 and r["normal_error_mean"] > 3 for r in ours["history"])
    # ... so the default waits and trains a plain autoencoder, while an S-update now would put part of
    # every sample's residual into S: the start of the fixed point of docs/EXPERIMENTS.md, entries 2, 9, 10
    assert all(not r["s_updated"] and r["s_nonzero_fraction"] == 0 for r in ours["history"])
    assert eager["history"][0]["s_nonzero_fraction"] > 0.99


@pytest.mark.parametrize("calibration", [True, False])
def test_block_ends_run_the_network_in_the_training_precision_and_the_final_threshold_in_fp32(tmp_path, calibration):
    cfg = compose_config(TINY + ["trainer.precision=bf16-mixed", "alternation.max_blocks=2", "figures=false"]
                         + ([] if calibration else ["dataset.n_calibration=0"]), tmp_path)
    datamodule, module, alternation, trainer = build(cfg, tmp_path)
    passes = []  # (block, under autocast, patches) of every forward pass outside the training steps

    def record(net, inputs, output):
        if not torch.is_grad_enabled():
            passes.append((alternation.blocks + 1, torch.is_autocast_enabled("cpu"), len(inputs[0])))

    module.net.register_forward_hook(record)
    trainer.fit(module, datamodule=datamodule)
    assert alternation.blocks == 2 and {block for block, _, _ in passes} == {1, 2}
    # the threshold's pass over its normal patches at the last block, nothing else
    normals = datamodule.calibration_x if calibration else datamodule.train_x
    assert {block for block, autocast, _ in passes if not autocast} == {2}
    assert sum(n for _, autocast, n in passes if not autocast) == len(normals)
    module.to("cpu")
    scores = module.score(normals) if calibration else module.score(normals)[~datamodule.train_synthetic]
    assert float(module.threshold) == pytest.approx(float(torch.quantile(scores, cfg.operating_point.quantile)),
                                                    rel=1e-6)


def test_threshold_comes_from_the_calibration_patches_when_there_are_some(tmp_path):
    cfg = compose_config(TINY + ["dataset.n_calibration=80"], tmp_path)  # TINY has 60
    metrics = run(cfg, tmp_path / "run")
    assert metrics["threshold_from"] == "80 calibration patches"
    datamodule, module, _, _ = build(cfg, tmp_path / "rebuild")
    load_checkpoint(module, tmp_path / "run" / "checkpoints" / "last.ckpt")  # the weights and the score the run chose
    datamodule.setup()
    assert datamodule.calibration_x.shape[0] == 80
    expected = torch.quantile(module.score(datamodule.calibration_x), cfg.operating_point.quantile)
    assert math.isclose(metrics["threshold"], float(expected), rel_tol=1e-5)
    training = torch.quantile(module.score(datamodule.train_x)[~datamodule.train_synthetic],
                              cfg.operating_point.quantile)
    assert not math.isclose(metrics["threshold"], float(training), rel_tol=1e-3)
    assert not math.isnan(metrics["history"][-1]["calibration_error_mean"])


def test_dcae_baseline_keeps_S_zero(tmp_path):
    cfg = compose_config(TINY + ["model=dcae"], tmp_path)
    metrics = run(cfg, tmp_path)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert torch.all(ckpt["state_dict"]["S"] == 0)
    assert all(r["s_nonzero_fraction"] == 0 for r in metrics["history"])


@pytest.mark.parametrize("robust", [True, False])
def test_clean_targets_fit_decorated_patches_to_their_clean_originals(tmp_path, robust):
    from rdcae.train import build

    cfg = compose_config(TINY + ["model.clean_targets=true", f"model.robust={robust}"], tmp_path)
    datamodule, module, _, _ = build(cfg, tmp_path)
    module.S.normal_(0, 0.1)  # some S, to see which samples have it taken off
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.clean is not None and torch.equal(batch.clean, datamodule.train_clean[batch.index])
    synthetic = batch.label.bool()
    assert synthetic.any() and (~synthetic).any()
    assert not torch.equal(batch.x[synthetic], batch.clean[synthetic])  # decorated
    assert torch.equal(batch.x[~synthetic], batch.clean[~synthetic])

    seen = {}
    module.net.register_forward_hook(lambda _, inputs, output: seen.update(input=inputs[0], output=output))
    loss = module.training_step(batch, 0)
    L_ = batch.x - module.S[batch.index] if robust else batch.x
    torch.testing.assert_close(seen["input"][synthetic], batch.x[synthetic])  # the defect goes in ...
    torch.testing.assert_close(seen["input"][~synthetic], L_[~synthetic])  # ... the normals as L = X − S
    target = torch.where(synthetic[:, None, None, None], batch.clean, L_)  # ... and comes out clean
    scale = module.net.pixel_std
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(seen["output"] / scale, target / scale))
    off = compose_config(TINY + ["model.clean_targets=false"], tmp_path)
    assert next(iter(build(off, tmp_path / "off")[0].train_dataloader())).clean is None


def test_nan_loss_stops_with_block_and_checkpoint_named(tmp_path):
    cfg = compose_config(TINY, tmp_path)
    datamodule, module, _, trainer = build(cfg, tmp_path)
    datamodule.train_x[0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"block 1 .*checkpoint"):
        trainer.fit(module, datamodule=datamodule)


@pytest.mark.parametrize(
    "override,message",
    [
        ("lambda=0", "lambda=0"),
        ("lambda=-1.6", "lambda=-1.6"),
        ("lambda=inf", "lambda=inf must be a finite number"),
        ("dataset.n_normal=0", "dataset.n_normal=0 must be a whole number >= 2"),
        ("noise_ratio=150", "noise_ratio=150"),
        ("model.score=max", "model.score='max'"),
        ("model.score_width=0", "model.score_width=0"),
        ("model.score_width=33", "model.score_width=33"),
        ("noise_ratio=100", "noise_ratio=100"),
        ("patch_size=36", "patch_size=36"),
        ("channels=2", "channels=2"),
        ("ckpt_path=/nonexistent/last.ckpt", "ckpt_path"),
        ("alternation.start_fraction=1.5", "alternation.start_fraction=1.5"),
        ("alternation.s_fraction=0", "alternation.s_fraction=0"),
        ("alternation.s_fraction=1.0", "alternation.s_fraction=1.0"),
        ("dataset.n_calibration=-3", "dataset.n_calibration=-3"),
        ("alternation.patience=0", "alternation.patience=0 must be a whole number of blocks"),
        ("alternation.min_delta=-1", "alternation.min_delta=-1 must be a number >= 0"),
        ("operating_point.false_alarms_per_image=0", "operating_point.false_alarms_per_image=0 must be a share"),
    ],
)
def test_bad_settings_are_rejected_naming_the_setting(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run(compose_config(TINY + [override], tmp_path), tmp_path)


def test_the_command_line_says_a_bad_setting_in_one_line_without_a_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rdcae.train", "lambda=-1", f"hydra.run.dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2
    assert not (tmp_path / "run").exists()  # refused before any work: no empty run folder left behind
    assert out.stderr.strip().splitlines() == ["error: lambda=-1 must be a finite number > 0: it weighs the ℓ2,1 norm "
                                               "of S (Eq. 7); the paper uses 1.6"]


def test_recipe_paper_sets_the_papers_choices_back():
    ours, paper = compose_config(["dataset=aitex"]), compose_config(["dataset=aitex", "recipe=paper"])
    assert ours.alternation.start_fraction == 0.5 and ours.dataset.n_calibration == 4000 and ours.model.normalize
    assert paper.alternation.start_fraction is None and paper.alternation.warmup_blocks == 0
    assert paper.dataset.n_calibration == 0 and not paper.model.normalize and paper.model.output == "sigmoid"
    assert ours.dataset.edge_margin == 96 and paper.dataset.edge_margin == 0  # the selvedge out / the paper's tiles
    for table in ("table1", "table2", "table3", "table4"):  # the paper's tables keep the paper's tiles
        assert compose_config([f"experiment={table}"]).dataset.edge_margin == 0, table
        assert compose_config([f"experiment={table}"]).dataset.calibration_images == 0, table  # every image trains
    # AITEX's thresholds come from images that never train; the paper's from the training normals
    assert ours.dataset.calibration_images == 3 and paper.dataset.calibration_images == 0
    # a folder spares one in five of its clean images, none when it holds fewer than five
    assert compose_config(["dataset=folder"]).dataset.calibration_images == "auto"
    assert compose_config(["dataset=folder", "recipe=paper"]).dataset.calibration_images == 0
    assert (ours.noise._target_.endswith("MixedNoise") and set(ours.noise.models) == {"julia", "lines"}
            and ours.model.score == "auto")
    assert paper.noise._target_.endswith("JuliaNoise") and paper.model.score == "norm"
    # the recipe's noise yields to the command line
    assert compose_config(["noise=gaussian"]).noise._target_.endswith("GaussianNoise")
    # everything else is shared, and a command-line override still wins over the recipe
    assert ours.model.lr == paper.model.lr and ours.model.filters == paper.model.filters
    # training stops on the validation AUC's plateau, in 1-epoch blocks of 8,000 windows; the paper's 30 blocks
    # of 20 epochs of the split's 1,120 patches
    assert (ours.alternation.patience, ours.alternation.block_epochs, ours.dataset.n_train) == (3, 1, 8000)
    assert (paper.alternation.patience, paper.alternation.block_epochs, paper.alternation.max_blocks) == (None, 20, 30)
    assert paper.dataset.n_train is None
    for table in ("table1", "table2", "table3", "table4"):  # the paper's tables keep the paper's training patches
        assert compose_config([f"experiment={table}"]).dataset.n_train is None, table
    assert compose_config(["recipe=paper", "dataset.n_calibration=50"]).dataset.n_calibration == 50


def test_unknown_noise_type_lists_the_available_ones():
    with pytest.raises(ConfigCompositionException, match="noise"):
        compose_config(["noise=fractalz"])


def test_paper_overrides_compose_at_the_top_level():
    cfg = compose_config(["dataset=aitex", "fabric=03", "lambda=1.6", "patch_size=64", "noise=gaussian",
                          "noise_ratio=5", "seed=2"])
    assert cfg.dataset.name == "aitex" and cfg.dataset.fabric == "03"
    assert cfg["lambda"] == 1.6 and cfg.patch_size == 64 and cfg.noise_ratio == 5 and cfg.seed == 2
    assert cfg.noise._target_.endswith("GaussianNoise")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rdcae.train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_help_lists_the_config_groups(tmp_path):
    result = _cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for group in ("dataset", "noise", "model", "trainer", "experiment"):
        assert f"{group}:" in result.stdout
    # the header's examples and knobs are the config's: a renamed setting fails here
    assert "python -m rdcae.train dataset=aitex fabric=03" in result.stdout
    lines = {line.split(":")[0]: line.split(":", 1)[1]
             for line in result.stdout.splitlines() if line.startswith("The ")}
    cfg = compose_config([])
    paper = re.sub(r"\([^)]*\)", "", lines["The paper's knobs"]).strip(" .").split(", ")
    assert len(paper) == 7 and all(name.strip() in cfg for name in paper), paper
    alternation = lines["The alternation"].strip(" .").replace("alternation.", "").split(", ")
    assert len(alternation) == 8 and all(name in cfg.alternation for name in alternation), alternation
    points = re.findall(r"([\w.]+) \(", lines["The operating points"])
    assert len(points) == 2 and all(OmegaConf.select(cfg, name) is not None for name in points), points
    # the settings shown are those of the dataset on the line, as the heading says
    aitex = _cli("dataset=aitex", "--help", cwd=tmp_path).stdout
    block = re.compile(r"^  block_epochs: (\d+)$", re.M)
    assert "dataset=aitex --help" in result.stdout
    assert (int(block.search(result.stdout)[1]), int(block.search(aitex)[1])) == (
        cfg.alternation.block_epochs, compose_config(["dataset=aitex"]).alternation.block_epochs)


def test_multirun_writes_one_folder_per_job(tmp_path):
    result = _cli("-m", "lambda=1.0,2.5", *TINY, "alternation.max_blocks=1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                  f"cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert "litlogger" not in printed and "treespec" not in printed  # Lightning's tip and torch's deprecation: quiet
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert len(jobs) == 2
    assert sorted(float(OmegaConf.load(j / "config.yaml")["lambda"]) for j in jobs) == [1.0, 2.5]
    assert all("rdcae run finished" in (j / "train.log").read_text() for j in jobs)  # the log keeps the summary


def _write_layout(root: Path, kind: str) -> Path:
    """Synthetic fabric saved in the MVTec-style (`folder`) or KolektorSDD2 layout."""
    from PIL import Image

    from rdcae.data.woven import generate

    sources = generate(seed=1, n_normal_images=2, n_defect_images=2, height=96, width=192)
    for i, src in enumerate(sources):
        gray = src.image[:, :, 0]
        mask = (src.mask if src.mask is not None else np.zeros(gray.shape, bool)).astype(np.uint8) * 255
        if kind == "folder":
            folder = root / ("train/good" if src.role == "normal" else "test/hole")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(gray).save(folder / f"{i:03d}.png")
            if src.role == "defect":
                (root / "ground_truth/hole").mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(root / "ground_truth/hole" / f"{i:03d}_mask.png")
        else:
            folder = root / ("train" if src.role == "normal" else "test")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2)).save(folder / f"{10000 + i:05d}.png")
            Image.fromarray(mask).save(folder / f"{10000 + i:05d}_GT.png")
    return root


@pytest.mark.parametrize("kind", ["folder", "ksdd2"])
def test_training_runs_on_user_folders_and_ksdd2_layout(tmp_path, kind):
    from PIL import Image

    data = _write_layout(tmp_path / kind, kind)
    if kind == "folder":  # an image smaller than a patch among the clean ones: left out everywhere, not fatal
        Image.fromarray(np.full((20, 20), 128, np.uint8)).save(data / "train/good" / "tiny.png")
        (data / "test/good").mkdir()  # the layout's clean test image: held out, for detect's false alarms
        clean = np.asarray(Image.open(data / "train/good/000.png"))
        Image.fromarray(np.ascontiguousarray(clean[:, ::-1])).save(data / "test/good/000.png")  # one more clean part
    cfg = compose_config(TINY_TRAINING + [f"dataset={kind}", f"data_dir={data}", "dataset.n_normal=200",
                                          "figures=false"], tmp_path)
    metrics = run(cfg, tmp_path / "run")
    assert metrics["patches"]["images"] == {"normal": 2 + (kind == "folder"), "defect": 2}
    if kind == "folder":
        assert [Path(p).name for p in metrics["patches"]["normal_images_too_small"]] == ["tiny.png"]
        assert metrics["patches"]["held_out_images"] == ["test/good/000.png"]
        from rdcae.detect import main

        assert main([f"model={tmp_path / 'run' / 'model.pt'}", "dataset=folder", f"data_dir={data}",
                     f"output_dir={tmp_path / 'detect'}", "overlays=false", "maps=false"]) == 0
        evaluation = json.loads((tmp_path / "detect" / "evaluation.json").read_text())
        assert evaluation["normal_images"] == 1 and evaluation["defect_images"] == 2
    assert metrics["patches"]["patches"]["test_defect"] > 0
    assert 0 <= metrics["test"]["auc"] <= 1
    assert (tmp_path / "run" / "model.pt").is_file()


def test_resuming_a_run_that_met_its_target_does_not_train_further(tmp_path):
    common = TINY + ["alternation.block_epochs=1", "alternation.max_blocks=3", "alternation.auc_target=0.01"]
    first = run(compose_config(common, tmp_path), tmp_path / "first")
    assert first["blocks"] == 1 and "auc_target" in first["stop_reason"]
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = run(compose_config(common + [f"ckpt_path={last}"], tmp_path), tmp_path / "resumed")
    assert resumed["blocks"] == 1
    assert resumed["threshold"] == first["threshold"]
    assert resumed["test"]["auc"] == first["test"]["auc"]


def test_the_plateau_rule_waits_for_patience_blocks_without_a_rise_above_min_delta():
    from rdcae.model.alternation import Alternation, AlternationSettings

    rule = Alternation(AlternationSettings(max_blocks=50, patience=3, min_delta=0.002)).on_plateau
    assert not rule([0.7, 0.8, 0.85])  # fewer blocks than patience + 1
    assert not rule([0.7, 0.8, 0.85, 0.851, 0.853, 0.84])  # block 5 rose by 0.003 over block 3
    assert rule([0.7, 0.8, 0.85, 0.851, 0.852, 0.84])  # three blocks within 0.002 of the best before them
    # AITEX fabric 00: the untrained network's AUC falls for three blocks before the network learns; no plateau
    dip = [0.731, 0.691, 0.666, 0.672, 0.779, 0.812, 0.863, 0.866, 0.875, 0.874, 0.875, 0.874]
    assert [rule(dip[:n]) for n in range(1, 13)] == [False] * 11 + [True]  # 3 blocks after its last rise (block 9)
    assert not rule([0.9, 0.8, 0.7, 0.6, 0.6, 0.6])  # no rise since the lowest value: it has not started learning
    assert not rule([0.7, 0.8, float("nan"), 0.8, 0.8, 0.8])  # without validation AUC there is no plateau
    assert not Alternation(AlternationSettings(patience=None)).on_plateau([0.5, 0.6] + [0.6] * 10)


def test_training_stops_on_the_validation_plateau_and_a_resumed_run_does_not_train_further(tmp_path, monkeypatch):
    import rdcae.model.alternation as alternation

    scripted = iter([0.60, 0.55, 0.70, 0.701, 0.70, 0.69, 0.75, 0.8])  # falls, rises in block 3, then flat
    monkeypatch.setattr(alternation, "aucs_by_kind", lambda *_: dict.fromkeys(("norm", "strip"), next(scripted)))
    common = TINY + ["alternation.block_epochs=1", "alternation.max_blocks=8", "alternation.patience=3"]
    first = run(compose_config(common, tmp_path), tmp_path / "first")
    assert first["blocks"] == 6 and first["epochs"] == 6  # blocks 4-6 within min_delta of block 3
    assert first["stop_reason"].startswith("validation AUC on its plateau after block 6: no rise above "
                                           "min_delta=0.002 for 3 blocks (patience=3; 0.7000 in block 3)")
    assert first["threshold_from"] == "60 calibration patches"  # the block that ends training uses all of them
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = run(compose_config(common + [f"ckpt_path={last}"], tmp_path), tmp_path / "resumed")
    assert resumed["blocks"] == 6 and resumed["test"]["auc"] == first["test"]["auc"]
    assert "the resume added no block" not in resumed["stop_reason"]  # its reason already says the plateau
    scripted = iter([0.60, 0.55, 0.70, 0.701, 0.70, 0.69, 0.75, 0.8])
    assert run(compose_config(common + ["alternation.patience=null"], tmp_path), tmp_path / "full")["blocks"] == 8
    # a run that ended at its max_blocks with the validation AUC on its plateau just then: resumed with more
    # blocks it stops at once, as a run with them from the start would have, and says so
    scripted = iter([0.60, 0.55, 0.70, 0.701, 0.70, 0.69])
    short = common[:-2] + ["alternation.max_blocks=6", "alternation.patience=3"]
    ended = run(compose_config(short, tmp_path), tmp_path / "ended")
    assert ended["stop_reason"].startswith("max_blocks=6 reached") and "on its plateau by then" in ended["stop_reason"]
    last = tmp_path / "ended" / "checkpoints" / "last.ckpt"
    more = run(compose_config(common + ["alternation.max_blocks=10", f"ckpt_path={last}"], tmp_path), tmp_path / "more")
    assert more["blocks"] == 6 and more["stop_reason"].endswith(
        "; the resume added no block: training had ended with its validation AUC on its plateau, where a run with "
        "max_blocks=10 from the start would have stopped too")


def test_a_test_set_without_defects_reports_no_auc_and_valid_json(tmp_path):
    metrics = run(compose_config(TINY + ["dataset.n_defect_images=0", "noise=none", "figures=false"], tmp_path),
                  tmp_path)
    assert math.isnan(metrics["test"]["auc"])
    saved = json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: NaN written as null
    assert saved["test"]["auc"] is None and saved["train_auc"] is None


def test_resuming_with_other_settings_is_refused_naming_them(tmp_path):
    common = TINY + ["alternation.max_blocks=1"]
    run(compose_config(common, tmp_path), tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"lambda=2.5 \(trained with 1.6\)"):
        run(compose_config(common + ["lambda=2.5", f"ckpt_path={last}"], tmp_path), tmp_path / "resumed")
    # any setting that changes the result, not only those of a list: the schedule, the operating point, the precision
    for override in ("alternation.block_epochs=3", "operating_point.quantile=0.995", "trainer.precision=64-true"):
        key = override.split("=")[0]
        with pytest.raises(ConfigError, match=rf"{key}=.*\(trained with"):
            run(compose_config(common + [override, f"ckpt_path={last}"], tmp_path), tmp_path / "resumed")
    # what only changes what is shown, and a larger max_blocks to go on, are allowed
    shown_only = ["alternation.max_blocks=2", "figures=false", "trainer.enable_progress_bar=true"]
    resumed = run(compose_config(common + shown_only + [f"ckpt_path={last}"], tmp_path), tmp_path / "resumed")
    assert resumed["blocks"] == 2
    # the run's detector file in place of its checkpoint, and the other way round: each names the right file
    model = tmp_path / "first" / "model.pt"
    with pytest.raises(ConfigError, match=rf"ckpt_path={model}: the run's exported detector, not a training "
                                          rf"checkpoint; resume from {last}"):
        run(compose_config(common + [f"ckpt_path={model}"], tmp_path), tmp_path / "resumed_from_model")
    from rdcae.inference import load_detector

    with pytest.raises(ValueError, match=rf"model={last}: a training checkpoint, not a detector file; the run's "
                                         rf"detector is {model}"):
        load_detector(last)


def test_batches_cover_every_sample_once_in_an_order_fixed_by_seed_and_epoch():
    from rdcae.data.datamodule import DeviceBatches

    x, label = torch.arange(10.0).view(10, 1, 1, 1), torch.zeros(10, dtype=torch.long)
    epoch = [0]
    batches = DeviceBatches(x, label, batch_size=4, seed=3, epoch=lambda: epoch[0])
    first = [b.index for b in batches]
    assert [len(i) for i in first] == [4, 4, 2] and len(batches) == 3
    assert sorted(torch.cat(first).tolist()) == list(range(10))
    assert all(torch.equal(b.x.flatten(), b.index.float()) for b in batches)  # x is gathered by index
    assert torch.equal(torch.cat([b.index for b in batches]), torch.cat(first))  # same epoch, same order
    epoch[0] = 1
    assert not torch.equal(torch.cat([b.index for b in batches]), torch.cat(first))


def test_bf16_detector_scores_stay_close_to_fp32(tiny_run):
    cfg, out, _ = tiny_run
    datamodule, _, _, _ = build(cfg, out / "rebuild3")
    detector = load_detector(out / "model.pt")
    fp32 = detector.score(datamodule.test_x)
    detector.precision = "bf16"
    bf16 = detector.score(datamodule.test_x)
    assert fp32.dtype == bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, rtol=0.02, atol=0.0)


def test_auc_target_one_never_stops_even_when_float_rounding_puts_the_auc_above_one(tmp_path, monkeypatch):
    import rdcae.metrics.classification as classification

    # a perfect separation summed in float32 can come out one rounding step above 1
    monkeypatch.setattr(classification, "binary_auroc",
                        lambda *args, **kwargs: torch.tensor(1.0000001, dtype=torch.float32))
    cfg = compose_config(TINY + ["alternation.block_epochs=1", "alternation.max_blocks=2", "alternation.auc_target=1.0",
                                 "figures=false"], tmp_path)
    metrics = run(cfg, tmp_path)
    assert metrics["blocks"] == 2 and "max_blocks" in metrics["stop_reason"]
    assert all(r["train_auc"] <= 1.0 for r in metrics["history"])


def test_ctrl_c_says_how_to_resume(tmp_path):
    import signal
    import time

    # neither stop rule may end the run before the signal comes: no plateau check, an AUC target never met
    args = [*TINY, "alternation.max_blocks=100000", "alternation.block_epochs=1", "alternation.patience=null",
            "alternation.auc_target=1.0", f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Ctrl-C as a terminal delivers it: a test run started in the background of a shell without job control
    # ignores SIGINT, and a child would inherit that
    process = subprocess.Popen([sys.executable, "-m", "rdcae.train", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert f"training interrupted; resume with the same settings and ckpt_path={last}" in err


def test_a_run_killed_at_a_random_point_resumes_to_the_same_result(tmp_path):
    import random
    import signal
    import time

    common = TINY + ["alternation.block_epochs=1", "alternation.max_blocks=5", "alternation.auc_target=1.0",
                     "figures=false", f"cache_dir={tmp_path / 'cache'}"]
    full = run(compose_config(common, tmp_path), tmp_path / "full")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "rdcae.train", *common, f"hydra.run.dir={tmp_path / 'killed'}"],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not (checkpoints / "last.ckpt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    delay = random.Random().uniform(0.0, 2.0)  # anywhere from the first block end to the test pass
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    last = checkpoints / "last.ckpt"
    resumed = run(compose_config(common + [f"ckpt_path={last}"], tmp_path), tmp_path / "resumed")
    assert resumed["blocks"] == full["blocks"] == 5, delay
    for key in ("auc", "f1", "accuracy"):
        assert math.isclose(resumed["test"][key], full["test"][key], abs_tol=1e-6), (key, delay)
    assert math.isclose(resumed["threshold"], full["threshold"], rel_tol=1e-5), delay


def test_where_the_output_is_no_terminal_each_block_is_one_line_instead_of_a_progress_bar(tmp_path, monkeypatch,
                                                                                          capsys):
    import io
    import re

    from rdcae.config import validate
    from rdcae.train import BlockLines

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    cfg = compose_config(TINY + ["trainer.enable_progress_bar=true", "figures=false"], tmp_path)
    trainer = build(cfg, tmp_path / "run", validate(cfg))[3]  # pytest's captured output: a log file
    assert trainer.progress_bar_callback is None and any(isinstance(c, BlockLines) for c in trainer.callbacks)
    run(cfg, tmp_path / "run")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("block ")]
    assert [re.match(r"block (\d) of at most 2 \(epoch (\d)\): loss [\d.]+, train AUC [\d.]+, validation AUC "
                     r"[\d.]+, \d+ s$", line).groups() for line in lines] == [("1", "2"), ("2", "4")]
    monkeypatch.setattr(sys, "stdout", Terminal())  # a terminal: Lightning's own bar, redrawn every step
    assert build(cfg, tmp_path / "tty", validate(cfg))[3].progress_bar_callback.refresh_rate == 1
    quiet = compose_config(TINY, tmp_path)  # the bar off: no bar at all
    assert build(quiet, tmp_path / "quiet", validate(quiet))[3].progress_bar_callback is None


def test_a_run_logs_each_block_to_its_train_log_and_each_lightning_message_once_on_the_console(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rdcae.train", *TINY, "figures=false",
                          "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-500:]
    console = out.stdout + out.stderr
    assert console.count("GPU available: False") == 1, console[:2000]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "GPU available: False" in log  # Hydra's log file keeps Lightning's messages
    assert [line.split(":")[0] for line in log.splitlines() if line.startswith("block ")] == [
        "block 1 of at most 2 (epoch 2)", "block 2 of at most 2 (epoch 4)"]
    assert "block 1 of at most 2" not in console  # the bar is off: the console shows no block
    precision = json.loads((tmp_path / "run" / "metrics.json").read_text())["precision"]  # as auto settled it
    assert precision == str(OmegaConf.load(tmp_path / "run" / "config.yaml").trainer.precision)
    named = {"32-true": "fp32"}.get(precision, precision)
    assert re.search(rf"blocks run +: 2 \(4 epochs, [\d.]+ s on cpu, in {named}\)", out.stdout), out.stdout[-1500:]
    # the data folder, relative to where the run started (data/woven), as an absolute path in the model file
    kept = load_detector(tmp_path / "run" / "model.pt").config["data_dir"]
    assert kept == str((tmp_path / "data" / "woven").resolve())


def test_every_detection_figure_reaches_tensorboard_when_the_command_ends(tmp_path):
    # full-width images: their figures are large events, which the writer queues until it is flushed
    out = subprocess.run([sys.executable, "-m", "rdcae.train", *TINY, "dataset.width=4096", "dataset.height=256",
                          f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-500:]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    figures = sorted(p.stem[len("detect_"):] for p in (tmp_path / "run" / "figures").glob("detect_*.png"))
    assert len(figures) == 3
    assert sorted(t[len("detect/"):] for t in events.Tags()["images"] if t.startswith("detect/")) == figures
