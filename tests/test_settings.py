"""Settings are checked once, before any work, and each component is built from its settings object;
the network's shape is one spec, saved with the weights and rebuilt from them."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF, TINY, compose_config
from omegaconf import OmegaConf, open_dict

from rdcae.config import upgrade, validate
from rdcae.errors import ConfigError
from rdcae.inference import load_detector, save_detector
from rdcae.metrics.threshold import QuantileThreshold
from rdcae.model.alternation import AlternationSettings
from rdcae.model.network import ConvAutoencoder, NetworkSpec
from rdcae.model.robust import RobustAutoencoder
from rdcae.precision import training_precision


def test_validate_builds_every_component_settings_from_the_config():
    cfg = compose_config(TINY + ["patch_size=64", "channels=1", "model.latent_dim=64", "operating_point.quantile=0.95",
                                 "baselines=[dcae,deep_svdd]"])
    settings = validate(cfg)
    assert settings.network == NetworkSpec(channels=1, patch_size=64, latent_dim=64)
    assert settings.alternation == AlternationSettings(**OmegaConf.to_container(cfg.alternation))
    assert settings.threshold_quantile == 0.95 and settings.baselines == ("dcae", "deep_svdd")
    assert settings.deep_svdd is not None and settings.deep_svdd.nu == cfg.deep_svdd.nu


def test_the_patch_threshold_is_the_99_percent_quantile_and_the_papers_999_under_its_recipe():
    assert validate(compose_config(TINY)).threshold_quantile == 0.99
    assert validate(compose_config(TINY + ["recipe=paper"])).threshold_quantile == 0.999


@pytest.mark.parametrize("override, message", [
    ("alternation.block_epochs=0", "alternation.block_epochs=0"),
    ("alternation.warmup_blocks=9", r"alternation.warmup_blocks=9 must be in \[0, max_blocks=2\): the S-updates wait "
                                    r"at least warmup_blocks blocks; raise alternation.max_blocks above 9 or set "
                                    r"alternation.warmup_blocks=1"),
    ("alternation.warmup_blocks=-1", r"alternation.warmup_blocks=-1 must be >= 0"),
    ("+alternation.blok_epochs=3", "alternation.blok_epochs: unknown setting"),
    ("alternation.s_fraction=1.5", "alternation.s_fraction=1.5"),
    ("operating_point.quantile=1.0", "operating_point.quantile=1.0"),
    ("model.output=tanh", "model.output='tanh'"),
    ("dataset.train_fraction=1.5", "dataset.train_fraction=1.5"),
])
def test_a_bad_setting_is_refused_before_any_patch_is_prepared(override, message, tmp_path, monkeypatch):
    import rdcae.data.datamodule as datamodule
    from rdcae.train import run

    def never(cfg):
        raise AssertionError("patches were prepared before the settings were checked")

    monkeypatch.setattr(datamodule, "prepare_patches", never)
    with pytest.raises(ConfigError, match=message):
        run(compose_config(TINY + [override], tmp_path), tmp_path / "run")


@pytest.mark.parametrize("amx, avx512_bf16, expected", [
    (True, False, "bf16-mixed"), (False, True, "bf16-mixed"), (False, False, "32-true"),
])
def test_precision_auto_trains_in_bf16_only_where_the_cpu_computes_it_natively(amx, avx512_bf16, expected,
                                                                                  monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert training_precision("cpu") == training_precision("auto") == expected
    cfg = compose_config(TINY + ["trainer.precision=auto"])
    validate(cfg)
    assert cfg.trainer.precision == expected  # settled before the run, so config.yaml records what ran
    cfg = compose_config(TINY + ["trainer.precision=32-true"])
    validate(cfg)
    assert cfg.trainer.precision == "32-true"  # a precision given is kept


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_precision_auto_on_a_gpu_counts_native_bf16_only_not_emulated(native, expected, monkeypatch):
    import contextlib

    from rdcae.precision import detection_precision

    asked = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return native or including_emulation  # a pre-Ampere GPU: emulated bf16 only

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert detection_precision("auto", "torch", "cuda:0") == expected
    assert training_precision("cuda") == ("bf16-mixed" if native else "32-true")
    assert asked and not any(asked)  # emulation never counted


def test_a_deep_svdd_block_missing_a_setting_is_refused_naming_it():
    cfg = compose_config(TINY + ["baselines=[deep_svdd]"])
    with open_dict(cfg):
        del cfg.deep_svdd.nu
    with pytest.raises(ConfigError, match="deep_svdd: nu missing"):
        validate(cfg)


def test_the_network_spec_round_trips_through_a_checkpoint_and_the_detector_file(tmp_path):
    spec = NetworkSpec(channels=1, patch_size=32, filters=(8, 16, 32), latent_dim=16, normalize=False, output="sigmoid")
    module = RobustAutoencoder(n_train=4, network=spec.to_dict())
    assert module.net.spec == spec and NetworkSpec.from_dict(dict(module.hparams.network)) == spec
    path = save_detector(tmp_path / "model.pt", module.net, 0.5, "strip", 2, {"seed": 0})
    detector = load_detector(path)
    assert detector.net.spec == spec
    assert (detector.score_kind, detector.score_width, float(detector.threshold)) == ("strip", 2, 0.5)
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(detector.net(x), module.net.eval()(x))


def test_a_detector_file_written_before_the_spec_had_kernel_size_and_bias_still_loads(tmp_path):
    net = ConvAutoencoder(NetworkSpec(channels=3, patch_size=32)).eval()
    path = save_detector(tmp_path / "model.pt", net, 1.0, "norm", 4, {})
    payload = torch.load(path, weights_only=True)
    payload["network"] = {k: v for k, v in payload["network"].items() if k not in ("kernel_size", "bias")}
    del payload["score"]  # files written before model.score existed: the norm
    torch.save(payload, path)
    detector = load_detector(path)
    x = torch.rand(2, 3, 32, 32)
    assert detector.net.spec == net.spec and detector.score_kind == "norm"
    torch.testing.assert_close(detector.score(x), (x - net(x)).flatten(1).norm(dim=1))


def test_the_quantile_threshold_accumulates_like_one_quantile_over_all_scores():
    scores = torch.rand(4000, generator=torch.Generator().manual_seed(0))
    threshold = QuantileThreshold(0.999)
    for chunk in scores.split(1024):
        threshold.update(chunk)
    assert float(threshold.compute()) == float(torch.quantile(scores, 0.999))
    with pytest.raises(ValueError, match="operating_point.quantile=1"):
        QuantileThreshold(1)


def test_a_run_folder_config_written_before_the_layout_upgrades_and_validates():
    cfg = compose_config(TINY)
    old = OmegaConf.to_container(cfg)
    old["alternation"]["threshold_quantile"] = old.pop("operating_point")["quantile"]
    old["noise"].pop("name")
    for model in old["noise"].get("models", {}).values():
        model.pop("name")
    old["dataset"]["name"] = "synthetic"
    upgraded = upgrade(OmegaConf.create(old))
    assert upgraded.operating_point.quantile == cfg.operating_point.quantile
    assert "threshold_quantile" not in upgraded.alternation
    assert upgraded.noise.name == cfg.noise.name == "julia_lines" and upgraded.dataset.name == "woven"
    assert validate(upgraded).alternation == validate(cfg).alternation


def test_an_aitex_fabric_given_as_a_number_is_settled_as_its_two_digit_code():
    cfg = compose_config(["dataset=aitex", "fabric=3", "data_dir=/nowhere"])
    validate(cfg)
    assert cfg.fabric == "03" and cfg.dataset.fabric == "03"  # what config.yaml and the file names then say


@pytest.mark.parametrize("overrides, name", [
    (["dataset=aitex", "fabric=3"], "aitex03"),
    (["dataset=folder", "data_dir=/lines/weave A/"], "folder-weave_A"),
    ([], "woven"),
])
def test_a_run_folder_is_named_after_its_fabric_or_its_folder(overrides, name):
    import re

    from hydra import compose, initialize_config_dir

    import rdcae.overrides  # noqa: F401  (registers the resolver of the name, as rdcae.train imports it)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    assert re.fullmatch(rf"outputs/runs/\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_{name}", cfg.hydra.run.dir)


def test_a_checkpoint_lit_over_the_whole_image_is_not_resumed_under_the_fabric_only_lighting(tmp_path):
    from rdcae.config import check_resume
    from rdcae.data.lighting import LIGHTING_ON_FABRIC

    cfg = compose_config(["dataset=folder", "data_dir=/parts"])
    now = OmegaConf.to_container(cfg, resolve=True)
    for name, config in (("older", now), ("unlit", now | {"dataset": now["dataset"] | {"lighting": "none"}}),
                         ("current", now | {LIGHTING_ON_FABRIC: True})):
        torch.save({"state_dict": {"w": torch.zeros(1)}, "config": config}, tmp_path / f"{name}.ckpt")
    with pytest.raises(ConfigError, match=r"older.ckpt was trained by an earlier rdcae, which measured "
                                          r"dataset.lighting=local over the whole image"):
        check_resume(cfg, str(tmp_path / "older.ckpt"))
    check_resume(cfg, str(tmp_path / "current.ckpt"))  # the same run: nothing refused
    with pytest.raises(ConfigError, match="dataset.lighting=local \\(trained with none\\)"):  # a setting, not a version
        check_resume(cfg, str(tmp_path / "unlit.ckpt"))


@pytest.mark.parametrize("value, margin", [(96, 96), ("96", 96), (96.0, 96), ("auto", "auto"), (None, 0),
                                           (-1, None), ("wide", None), (True, None), (1.5, None)])
def test_an_edge_margin_is_whole_pixels_or_auto(value, margin):
    from types import SimpleNamespace

    from rdcae.data.region import margin_setting
    from rdcae.inference.image import Preprocessing

    assert margin_setting(value) == margin
    spec, config = SimpleNamespace(channels=1, patch_size=32), {"dataset": {"edge_margin": value}}
    if margin is None:
        with pytest.raises(ValueError, match=f"the model file's dataset.edge_margin={value!r} is neither whole pixels"):
            Preprocessing.from_config(config, spec)
    else:
        assert Preprocessing.from_config(config, spec).edge_margin == margin
