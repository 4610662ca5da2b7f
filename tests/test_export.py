"""The ONNX export of a detector and the runtimes that run it: onnxruntime, and OpenVINO when installed."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import TINY, compose_config
from omegaconf import OmegaConf
from PIL import Image

from rdcae import export as export_module
from rdcae.export import main
from rdcae.inference import load_detector, save_detector
from rdcae.inference import onnx as onnx_module
from rdcae.inference.detector import PatchScorer
from rdcae.inference.onnx import (
    OPENVINO_BATCH,
    OnnxScorer,
    OpenVinoScorer,
    export_onnx,
    load_onnx_metadata,
    parity,
)
from rdcae.model.network import ConvAutoencoder, NetworkSpec

SPEC = NetworkSpec(channels=3, patch_size=32)
CONFIG = {"channels": 3, "patch_size": 32, "seed": 0, "dataset": {"name": "folder", "data_dir": "/nonexistent"}}


def texture_patches(n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, 3, 32, 32): noise around mid-gray with a contrast of its own per patch, so that
    the scores spread over a wide range, as those of real fabric do."""
    rng = np.random.default_rng(seed)
    contrast = rng.uniform(2, 60, (n, 1, 1, 1))
    return np.clip(128 + contrast * rng.standard_normal((n, 3, 32, 32)), 0, 255).astype(np.uint8)


def write_detector(tmp_path, score: str = "norm", config: dict | None = None, patches: np.ndarray | None = None):
    """A tiny untrained detector file whose threshold splits `patches` in half (the hardest place
    for two runtimes to agree); returns (model.pt path, patches)."""
    torch.manual_seed(0)
    net = ConvAutoencoder(SPEC).eval()
    patches = texture_patches(600) if patches is None else patches
    with torch.no_grad():
        scores = np.sort(PatchScorer(net, score, 4)(torch.from_numpy(patches))[0].numpy())
    threshold = float((scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2)
    path = save_detector(tmp_path / "model.pt", net, threshold, score, 4, config or CONFIG)
    return path, patches


@pytest.mark.parametrize("score", ["norm", "strip"])
def test_onnxruntime_scores_equal_torch_scores_at_another_batch_size(tmp_path, monkeypatch, score):
    monkeypatch.setattr(onnx_module, "CHUNK", 256)  # exported with a batch of 2, run in chunks of 256, 256 and 88
    path, patches = write_detector(tmp_path, score)
    detector = load_detector(path)
    runtime = OnnxScorer(export_onnx(detector, tmp_path / "model.onnx"), threads=1)
    check = parity(detector, runtime, patches)
    assert check["max_relative_difference"] < 1e-3
    assert check["disagreements"] == 0
    chunks = []
    run = runtime._run
    runtime._run = lambda chunk: chunks.append(len(chunk)) or run(chunk)
    assert 0.3 < float((runtime(patches)[0] > runtime.threshold).mean()) < 0.7  # the threshold does split them
    assert chunks == [256, 256, 88]

    scores, energy = runtime(patches[:7])
    with torch.no_grad():
        ref_scores, ref_energy = detector.scorer()(torch.from_numpy(patches[:7]))
    assert scores.dtype == energy.dtype == np.float32 and scores.shape == (7,) and energy.shape == (7, 32, 32)
    np.testing.assert_allclose(scores, ref_scores.numpy(), rtol=1e-3)
    np.testing.assert_allclose(energy, ref_energy.numpy(), rtol=1e-3, atol=1e-6)


def test_the_graph_takes_uint8_patches_with_a_dynamic_batch_axis(tmp_path):
    path, _ = write_detector(tmp_path, patches=texture_patches(4))
    model = onnx.load(str(export_onnx(load_detector(path), tmp_path / "model.onnx")))
    (patches,), (score, energy) = model.graph.input, model.graph.output
    assert (patches.name, score.name, energy.name) == ("patches", "score", "energy")
    assert patches.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert score.type.tensor_type.elem_type == energy.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in patches.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 32, 32]
    assert [d.dim_param or d.dim_value for d in energy.type.tensor_type.shape.dim] == ["batch", 32, 32]


def test_the_metadata_round_trips(tmp_path):
    config = {**CONFIG, "model": {"score": "auto", "filters": [32, 64, 128]}, "note": None}
    torch.manual_seed(0)
    path = save_detector(tmp_path / "model.pt", ConvAutoencoder(SPEC).eval(), 0.1 + 1 / 3, "strip", 6, config)
    detector = load_detector(path)
    onnx_path = export_onnx(detector, tmp_path / "model.onnx")
    meta = load_onnx_metadata(onnx_path)
    assert meta["threshold"] == float(detector.threshold)  # the exact float, not a rounded one
    assert meta["spec"] == SPEC and meta["score"] == {"kind": "strip", "width": 6} and meta["config"] == config
    runtime = OnnxScorer(onnx_path)
    assert (runtime.threshold, runtime.spec, runtime.score_kind, runtime.score_width, runtime.config) == (
        meta["threshold"], SPEC, "strip", 6, config)


def test_the_image_operating_point_travels_in_the_metadata_as_a_formula_without_rdcae(tmp_path):
    from rdcae.metrics.operating_point import ImageOperatingPoint, window_rate

    torch.manual_seed(0)
    point = ImageOperatingPoint(np.random.default_rng(0).gamma(4, 0.2, 500), 700, 0.01)
    path = save_detector(tmp_path / "model.pt", ConvAutoencoder(SPEC).eval(), 1.0, "norm", 4, CONFIG, point)
    detector = load_detector(path)
    card = load_onnx_metadata(export_onnx(detector, tmp_path / "model.onnx"))["image_operating_point"]
    assert card["threshold"] == pytest.approx(detector.image_threshold())
    for alpha in (0.01, 0.001):  # another rate from the card alone
        t = card["q90"] + card["sigma"] * np.log(0.10 / window_rate(alpha, card["windows_per_image"]))
        assert t == pytest.approx(detector.image_threshold(alpha), rel=1e-6)
    runtime = OnnxScorer(tmp_path / "model.onnx")  # and the scores themselves: any rate or stride, exactly
    np.testing.assert_array_equal(runtime.operating_point.scores, detector.operating_point.scores)
    for alpha, stride in [(None, None), (0.3, None), (0.001, 16), (0.5, 8)]:
        assert runtime.image_threshold(alpha, stride) == detector.image_threshold(alpha, stride)
    plain = save_detector(tmp_path / "plain.pt", ConvAutoencoder(SPEC).eval(), 1.0, "norm", 4, CONFIG)
    plain_meta = load_onnx_metadata(export_onnx(load_detector(plain), tmp_path / "plain.onnx"))
    assert plain_meta["image_operating_point"] is None and plain_meta["operating_point"] is None
    assert OnnxScorer(tmp_path / "plain.onnx").image_threshold(0.3) == 1.0  # the patch threshold, as model.pt's


def test_a_file_without_rdcae_metadata_is_refused_naming_it(tmp_path):
    path, _ = write_detector(tmp_path, patches=texture_patches(4))
    model = onnx.load(str(export_onnx(load_detector(path), tmp_path / "model.onnx")))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match=r"plain\.onnx.*without rdcae detector metadata"):
        OnnxScorer(tmp_path / "plain.onnx")
    (tmp_path / "notes.onnx").write_text("not a graph")
    with pytest.raises(ValueError, match=r"notes\.onnx: not a readable ONNX file"):
        OnnxScorer(tmp_path / "notes.onnx")
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        OnnxScorer(tmp_path / "missing.onnx")


def test_the_runtime_refuses_float_or_misshapen_patches(tmp_path):
    path, patches = write_detector(tmp_path, patches=texture_patches(4))
    runtime = OnnxScorer(export_onnx(load_detector(path), tmp_path / "model.onnx"))
    with pytest.raises(TypeError, match=r"uint8 patches \(K, 3, 32, 32\), got dtype float32"):
        runtime(patches.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"got shape \(4, 1, 32, 32\)"):
        runtime(patches[:, :1])
    scores, energy = runtime(patches[:0])
    assert scores.shape == (0,) and energy.shape == (0, 32, 32)


def test_the_command_writes_model_onnx_next_to_model_pt_and_checks_the_run_test_patches(tmp_path, capsys):
    cfg = compose_config(TINY, tmp_path)  # the embedded woven data: the run's test patches can be rebuilt
    path, _ = write_detector(tmp_path, config=OmegaConf.to_container(cfg, resolve=True), patches=texture_patches(4))
    assert main([f"model={path}"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "model.onnx").is_file() and f"wrote {tmp_path / 'model.onnx'}" in out
    assert "parity onnxruntime vs PyTorch on the run's" in out and "defect test patches" in out
    assert "decisions agree on 100.00 %" in out
    assert not (tmp_path / "cache").exists()  # no patch cache left behind where the run kept none
    (tmp_path / "cache").mkdir()
    assert main([f"model={path}"]) == 0
    assert list((tmp_path / "cache").glob("*.npz"))  # where the run's cache is, it serves the patches


def test_the_command_checks_random_patches_when_the_data_cannot_be_rebuilt(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export_module, "RANDOM_PATCHES", 64)
    path, _ = write_detector(tmp_path, patches=texture_patches(4))
    assert main([f"model={path}", "format=onnx", f"output={tmp_path / 'out' / 'scorer.onnx'}"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "out" / "scorer.onnx").is_file() and not (tmp_path / "model.onnx").exists()
    assert "64 random uint8 patches (the run's data could not be rebuilt: data_dir=/nonexistent" in out


def test_data_dir_rebuilds_the_run_test_patches_from_where_the_data_now_lies(tmp_path, capsys, caplog):
    from test_bad_inputs import config as aitex_config
    from test_bad_inputs import layout as aitex_layout

    trained_on = tmp_path / "moved_away"
    cfg = OmegaConf.to_container(aitex_config(trained_on, tmp_path), resolve=True)
    path, _ = write_detector(tmp_path, config=cfg, patches=texture_patches(4))
    root = aitex_layout(tmp_path / "aitex")  # the same data, elsewhere
    mask = root / "Mask_images" / "0011_016_03_mask.png"
    Image.fromarray(np.zeros((64, 256), np.uint8)).save(mask)  # a mask that marks nothing: a note at training

    assert main([f"model={path}"]) == 0  # without data_dir= it falls back to noise, and says how to do better
    captured = capsys.readouterr()
    assert "random uint8 patches" in captured.out and "data_dir= says where it is" in captured.out

    caplog.set_level(logging.INFO)
    assert main([f"model={path}", f"data_dir={root}", f"output={tmp_path / 'b.onnx'}"]) == 0
    captured = capsys.readouterr()
    assert "parity onnxruntime vs PyTorch on the run's" in captured.out and "defect test patches" in captured.out
    assert "marks no pixel" not in caplog.text  # the data's notes belong to training

    wrong = tmp_path / "nowhere"
    assert main([f"model={path}", f"data_dir={wrong}", f"output={tmp_path / 'c.onnx'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"data_dir={wrong}: the run's test patches cannot be rebuilt" in err
    assert not (tmp_path / "c.onnx").exists()


@pytest.mark.parametrize("args, message", [
    (["model={missing}"], "no such file"),
    (["model={model}", "format=tflite"], "format=tflite: choose one of onnx"),
    (["model={model}", "opset=18"], "opset=18: unknown setting"),
    (["model={model}", "ouput=x.onnx"], "ouput=x.onnx: unknown setting; did you mean output=?"),
    (["{model}"], "arguments are key=value"),
    ([], "model= is required"),
    (["model={model}", "output={tmp}/a_file/x.onnx"], "output={tmp}/a_file/x.onnx: cannot write it there"),
    (["model={model}", "output={model}"], "is the model file itself; choose another path"),
])
def test_bad_arguments_give_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    path, _ = write_detector(tmp_path, patches=texture_patches(4))
    (tmp_path / "a_file").write_text("")  # a file where a folder of the output would have to be
    argv = [a.format(model=path, missing=tmp_path / "missing.pt", tmp=tmp_path) for a in args]
    message = message.format(tmp=tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_file_that_is_not_a_detector_is_refused_with_one_line_and_exit_code_2(tmp_path):
    model = tmp_path / "model.pt"
    torch.save({"state_dict": {}}, model)  # a PyTorch file, but not a detector
    result = subprocess.run([sys.executable, "-m", "rdcae.export", f"model={model}"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"model={model}: not an rdcae detector file" in result.stderr
    assert not (tmp_path / "model.onnx").exists()


def test_help_prints_usage_with_an_example(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m rdcae.export model=PATH")
    assert "example: python -m rdcae.export model=" in out


def test_openvino_missing_is_named_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(ImportError, match=r"backend=openvino needs OpenVINO: pip install 'openvino>=2024.2'"):
        OpenVinoScorer(tmp_path / "model.onnx")


@pytest.mark.parametrize("score", ["norm", "strip"])
def test_openvino_fp32_scores_equal_torch_scores(tmp_path, score):
    pytest.importorskip("openvino")
    path, patches = write_detector(tmp_path, score)
    detector = load_detector(path)
    runtime = OpenVinoScorer(export_onnx(detector, tmp_path / "model.onnx"), precision="fp32")
    assert runtime.compiled.inputs[0].get_partial_shape().is_static and len(patches) % OPENVINO_BATCH
    check = parity(detector, runtime, patches)  # every patch scored, the last part of the batch padded
    assert check["max_relative_difference"] < 1e-3 and check["disagreements"] == 0
    assert runtime.threshold == float(detector.threshold) and runtime.spec == SPEC


def test_openvino_bf16_decisions_agree_on_99_percent_of_patches(tmp_path):
    ov = pytest.importorskip("openvino")
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16 arithmetic")
    path, patches = write_detector(tmp_path, "strip")
    detector = load_detector(path)
    runtime = OpenVinoScorer(export_onnx(detector, tmp_path / "model.onnx"), precision="bf16")
    assert runtime.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
    check = parity(detector, runtime, patches)
    assert check["decisions_agree"] >= 0.99
    assert 1e-5 < check["max_relative_difference"] < 0.1  # bf16 really ran, and still scores the same patches


def test_an_onnx_file_given_to_export_is_named_as_one_in_one_line(tmp_path, capsys):
    path, _ = write_detector(tmp_path, patches=texture_patches(4))
    graph = export_onnx(load_detector(path), tmp_path / "model.onnx")
    assert main([f"model={graph}", f"output={tmp_path / 'again.onnx'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"model={graph}: an ONNX export, not a run's model.pt" in err
    assert "rdcae.detect" in err and not (tmp_path / "again.onnx").exists()
    assert main([f"model={graph}"]) == 2  # no output=: named as what it is, not as the output it would be
    assert f"error: model={graph}: an ONNX export, not a run's model.pt" in capsys.readouterr().err
