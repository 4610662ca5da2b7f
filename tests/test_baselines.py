"""Table 4 baselines on the patches and split of a tiny run, and the Figure 5 / 6 pictures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, compose_config
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

import rdcae.baselines as baselines
from rdcae.baselines import METHODS, dcae_features, run_baselines
from rdcae.data.datamodule import DefectDataModule
from rdcae.metrics.classification import as_unit_interval, evaluate
from rdcae.model.network import ConvAutoencoder, NetworkSpec
from rdcae.model.score import reconstruction_error
from rdcae.paper.tables import METHOD_LABELS
from rdcae.results import figures
from rdcae.results.summary import summary

EPOCHS = 2
# the same architecture, narrower: seconds on 2 cores
SMALL_NET = ["model.filters=[8,16,16]", "model.latent_dim=32", "model.batch_size=128"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """All eight methods run once on a tiny DataModule: (cfg, datamodule, metrics, scored, output dir)."""
    out = tmp_path_factory.mktemp("baselines")
    cfg = compose_config(TINY + SMALL_NET + ["dataset.n_calibration=0"], out)  # thresholds on the training normals
    datamodule = DefectDataModule(cfg, instantiate(cfg.noise), batch_size=int(cfg.model.batch_size))
    datamodule.setup("fit")
    scored = {}

    def recording(*args, **kwargs):  # keep what run_baselines scored, to look inside the fitted models
        scored.update(score_methods(*args, **kwargs))
        return scored

    score_methods = baselines.score_methods
    writer = SummaryWriter(str(out / "tensorboard"))
    reference = {"rdcae": torch.rand(len(datamodule.test_y), generator=torch.Generator().manual_seed(0))}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(baselines, "score_methods", recording)
        metrics = run_baselines(cfg, datamodule, EPOCHS, list(METHODS), output_dir=out, writer=writer,
                                reference=reference)
    writer.close()
    return cfg, datamodule, metrics, scored, out


def test_every_method_reports_json_metrics_on_the_same_test_set(tiny):
    _, _, metrics, _, _ = tiny
    assert list(metrics) == list(METHODS)
    for name, m in metrics.items():
        assert 0 <= m["auc"] <= 1, name
        assert 0 <= m["f1"] <= 1 and 0 <= m["accuracy"] <= 1, name
    assert metrics["dcae"]["epochs"] == metrics["deep_svdd"]["epochs"] == EPOCHS
    assert metrics["ocsvm_lrep"]["epochs"] is None
    json.dumps(metrics, allow_nan=False)


def test_every_method_scores_exactly_the_datamodules_test_patches(tiny):
    _, dm, _, scored, out = tiny
    for name, s in scored.items():
        assert s.scores.shape == s.decisions.shape == (len(dm.test_y),), name
    dcae = scored["dcae"].model
    with torch.no_grad():  # the score, computed independently of the module's chunked scoring
        expected = reconstruction_error(dm.test_x, dcae.net(dm.test_x))
    np.testing.assert_allclose(scored["dcae"].scores, expected.numpy(), rtol=1e-5, atol=1e-6)
    saved = np.load(out / "baselines_test_scores.npz")
    np.testing.assert_array_equal(saved["test_y"], dm.test_y.numpy())
    assert set(saved.files) == {"test_y", "rdcae", *METHODS}


def test_dcae_threshold_is_the_quantile_of_its_normal_training_errors(tiny):
    cfg, dm, _, scored, _ = tiny
    dcae = scored["dcae"].model
    assert not dcae.robust and torch.all(dcae.S == 0)
    errors = dcae.score(dm.train_x)[~dm.train_synthetic.to(dcae.device)]
    assert math.isclose(float(dcae.threshold), float(torch.quantile(errors, cfg.operating_point.quantile)),
                        rel_tol=1e-6)
    np.testing.assert_array_equal(scored["dcae"].decisions, scored["dcae"].scores > float(dcae.threshold))


def test_dcae_threshold_comes_from_the_calibration_patches_when_there_are_some(tmp_path):
    cfg = compose_config(TINY + SMALL_NET + ["dataset.n_calibration=60"], tmp_path)
    dm = DefectDataModule(cfg, instantiate(cfg.noise), batch_size=int(cfg.model.batch_size))
    dm.setup("fit")
    dcae = baselines.train_dcae(cfg, dm, 1)
    expected = torch.quantile(dcae.score(dm.calibration_x), cfg.operating_point.quantile)
    assert len(dm.calibration_x) == 60
    assert math.isclose(float(dcae.threshold), float(expected), rel_tol=1e-6)


def test_nearest_neighbour_scores_the_distance_to_the_closest_clean_training_patch(tiny):
    cfg, dm, _, scored, _ = tiny
    train = dm.train_clean.flatten(1).double()
    test = dm.test_x.flatten(1).double()
    expected = torch.cdist(test, train).min(1).values  # brute force, independently of scikit-learn
    np.testing.assert_allclose(scored["knn_pixel"].scores, expected.numpy(), rtol=1e-4, atol=1e-5)
    # no calibration patches: each training patch's distance to its nearest other one sets the threshold
    own = torch.cdist(train, train)
    own.fill_diagonal_(float("inf"))
    normal = own.min(1).values[~dm.train_synthetic]
    threshold = float(torch.quantile(normal, cfg.operating_point.quantile))
    s, flagged = scored["knn_pixel"].scores, scored["knn_pixel"].decisions
    assert flagged[s > threshold * (1 + 1e-4)].all() and not flagged[s < threshold * (1 - 1e-4)].any()
    assert 0 < flagged.sum() < len(flagged)


@pytest.mark.parametrize("name", ["deep_svdd", "deep_svdd_soft"])
def test_deep_svdd_centre_has_no_entry_closer_to_zero_than_eps(tiny, name):
    _, _, _, scored, _ = tiny
    module = scored[name].model
    assert torch.all(module.c.abs() >= module.settings.eps)
    assert module.settings.eps == 0.1


@pytest.mark.parametrize("name", ["deep_svdd", "deep_svdd_soft"])
def test_deep_svdd_network_has_no_bias_parameters(tiny, name):
    _, _, _, scored, _ = tiny
    net = scored[name].model.net
    assert not [n for n, _ in net.named_parameters() if "bias" in n]
    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 8 and all(m.bias is None for m in layers)


def test_bias_option_keeps_the_default_network_unchanged():
    default, bias_free = (ConvAutoencoder(NetworkSpec(channels=3, patch_size=32)),
                          ConvAutoencoder(NetworkSpec(channels=3, patch_size=32, bias=False)))
    with_bias = set(default.state_dict())
    assert {k for k in with_bias if k.endswith(".bias")} == ({f"encoder.{i}.bias" for i in (0, 3, 6, 10)}
                                                             | {f"decoder.{i}.bias" for i in (0, 4, 7, 10)})
    assert set(bias_free.state_dict()) == {k for k in with_bias if not k.endswith(".bias")}


def test_soft_boundary_flags_patches_outside_the_sphere(tiny):
    _, dm, _, scored, _ = tiny
    s = scored["deep_svdd_soft"]
    module = s.model
    assert module.R > 0
    np.testing.assert_array_equal(s.decisions, s.scores > 0)
    # R is the (1 − ν)-quantile of the training distances
    outside = float((module.score(dm.train_x) > 0).float().mean())
    assert outside <= module.settings.nu + 1 / len(dm.train_x)


@pytest.mark.parametrize("name", ["ocsvm_lrep", "ocsvm_aere", "iforest_lrep", "iforest_aere"])
def test_ocsvm_and_isolation_forest_decide_by_predict_and_report_f1(tiny, name):
    cfg, dm, metrics, scored, _ = tiny
    s = scored[name]
    features = dcae_features(scored["dcae"].model, dm.test_x, name.split("_")[1])
    assert features.shape == (len(dm.test_y), cfg.model.latent_dim if name.endswith("lrep") else 1)
    np.testing.assert_allclose(s.scores, -s.model.decision_function(features), rtol=1e-6)
    np.testing.assert_array_equal(s.decisions, s.model.predict(features) == -1)
    y = dm.test_y.numpy().astype(bool)
    tp, fp, fn = (s.decisions & y).sum(), (s.decisions & ~y).sum(), (~s.decisions & y).sum()
    assert math.isclose(metrics[name]["f1"], 2 * tp / (2 * tp + fp + fn), rel_tol=1e-6)


def test_figure6_roc_of_all_methods_is_saved_and_in_tensorboard(tiny):
    _, _, _, _, out = tiny
    assert (out / "figures" / "fig6_roc_methods.png").stat().st_size > 1000
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert "fig6_roc_methods" in events.Tags()["images"]
    assert {"baselines/dcae/auc", "baselines/dcae/f1"} <= set(events.Tags()["scalars"])


def test_a_perfect_scorer_has_auc_1_and_an_inverted_one_auc_0():
    labels = torch.tensor([0, 0, 0, 1, 1])
    perfect = np.array([-3.0, -2.5, -0.1, 0.2, 40.0])  # negative scores too, as OC-SVM gives
    assert evaluate(perfect, labels)["auc"] == 1.0
    assert evaluate(-perfect, labels)["auc"] == 0.0
    assert evaluate(perfect, labels, perfect > 0) == {"auc": 1.0, "f1": 1.0, "accuracy": 1.0}


def test_scores_map_into_the_unit_interval_keeping_order_and_ties():
    scores = np.array([-1e6, 3.0, 3.0, 40.0, 50.0])  # a sigmoid gives 40 and 50 the same float32
    p = as_unit_interval(scores)
    assert torch.all((p >= 0) & (p < 1))
    assert p[0] < p[1] == p[2] < p[3] < p[4]


def test_a_test_set_with_one_class_has_no_auc():
    assert evaluate(np.array([0.1, 0.2]), torch.tensor([0, 0]))["auc"] is None


def test_unknown_method_is_refused_naming_the_setting(tiny):
    cfg, dm, _, _, _ = tiny
    with pytest.raises(ValueError, match=r"baselines=.*'dcea'.*choose from dcae, deep_svdd"):
        run_baselines(cfg, dm, EPOCHS, ["dcae", "dcea"])


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_is_one_for_identical_patches_and_falls_with_noise(channels):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, channels, 32, 32, generator=g)
    noise = torch.randn(4, channels, 32, 32, generator=g)
    np.testing.assert_allclose(figures.ssim_scores(x, x), 1.0, atol=1e-12)
    slight, strong = (figures.ssim_scores(x, (x + 0.05 * noise).clamp(0, 1)),
                      figures.ssim_scores(x, (x + 0.3 * noise).clamp(0, 1)))
    assert slight.shape == (4,) and (strong < slight).all() and (slight < 1).all()


def test_error_ssim_figure_shows_each_group_with_its_count(tmp_path):
    rng = np.random.default_rng(0)
    synthetic = np.arange(20) < 3
    test_y, test_pred = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 1, 0])
    fig = figures.error_ssim_figure(rng.random(20), rng.random(20), synthetic, rng.random(6), rng.random(6), test_y,
                                    test_pred, threshold=0.5, title="fabric 03")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for label in ("train normal (17)", "train synthetic defect (3)", "TP (2)", "TN (2)", "FP (1)", "FN (1)"):
        assert label in labels
    fig.savefig(tmp_path / "fig5.png")
    assert (tmp_path / "fig5.png").stat().st_size > 1000


def test_roc_methods_figure_labels_each_curve_with_its_auc(tmp_path):
    curves = {"Robust DCAE": (torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 1.0]), 1.0),
              "DCAE": ([0, 1], [0, 1], None)}
    fig = figures.roc_methods_figure(curves, "test ROC")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["Robust DCAE (AUC = 1.000)", "DCAE (AUC n/a)", "chance"]
    fig.savefig(tmp_path / "fig6.png")
    assert (tmp_path / "fig6.png").stat().st_size > 1000


def test_the_run_summary_prints_every_baseline_beside_rdcae(tiny):
    _, _, metrics, _, _ = tiny
    run = {"blocks": 1, "epochs": EPOCHS, "fit_seconds": 1.0, "device": "cpu", "stop_reason": "-", "train_auc": 0.5,
           "score": "norm", "threshold": 1.0, "test": {"auc": 0.5, "f1": 0.5}, "baselines": metrics}
    lines = summary(run, Path("run")).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  baselines       : "))
    for i, (name, m) in enumerate(metrics.items()):
        assert f"{METHOD_LABELS[name]}: AUC {m['auc']:.4f}  F1 {m['f1']:.4f}" in lines[start + i], name
    assert lines[start + len(metrics)].startswith("  outputs")
    assert not any("baselines" in line for line in summary({**run, "baselines": {}}, Path("run")).splitlines())


def test_the_run_summary_names_the_quantile_counts_patches_and_flags_a_test_auc_near_chance():
    run = {"blocks": 1, "epochs": 2, "fit_seconds": 1.0, "device": "cpu", "stop_reason": "-", "train_auc": 0.9,
           "score": "norm", "threshold": 1.0, "threshold_quantile": 0.99, "threshold_from": "400 calibration patches",
           "test": {"auc": 0.59, "f1": 0.25, "tp": 3, "fp": 1, "tn": 90, "fn": 9}}
    text = summary(run, Path("run"))
    assert "(the 99 % quantile of the scores of 400 calibration patches; a patch above it is a defect)" in text
    assert "  test patches    : AUC 0.5900" in text and "little better than chance" in text
    assert "python -m rdcae.data summary" in text  # where to look first: what the model trained on
    assert "little better than chance" not in summary({**run, "test": {**run["test"], "auc": 0.9}}, Path("run"))
    assert "train it longer" in text  # stopped for another reason than its plateau: more blocks may help
    plateau = summary({**run, "stop_reason": "validation AUC on its plateau after block 7"}, Path("run"))
    assert "train it longer" not in plateau and "more blocks will not help" in plateau
    empty = summary({**run, "test": {"auc": math.nan, "f1": 0.0, "tp": 0, "fp": 6, "tn": 474, "fn": 0}}, Path("run"))
    assert "no defect patch in the test set" in empty and "little better than chance" not in empty
