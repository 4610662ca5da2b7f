"""model.average_epochs: the block ends, the test and the model file use a moving average of the weights."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from conftest import TINY, compose_config

from rdcae.errors import ConfigError
from rdcae.inference import load_detector
from rdcae.model.averaging import AveragedWeights, ema_decay
from rdcae.train import build, run


def test_the_decay_reaches_that_many_epochs_of_steps():
    assert ema_decay(63, 1.0) == pytest.approx(1 - 1 / 63)
    assert ema_decay(10, 2.0) == pytest.approx(0.95)
    assert ema_decay(1, 0.5) == 0.0  # less than one step: the last step's weights


class StepWeights(L.Callback):
    """The raw weights after every optimizer step (runs after AveragedWeights' update, before its swap)."""

    def __init__(self) -> None:
        self.steps: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append([p.detach().clone() for p in module.net.parameters()])


def test_every_block_end_and_the_trained_network_use_the_average_of_the_steps(tmp_path):
    cfg = compose_config(TINY + ["model.average_epochs=1", "alternation.block_epochs=2", "alternation.max_blocks=2",
                                 "alternation.auc_target=1.0"], tmp_path)
    datamodule, module, alternation, trainer = build(cfg, tmp_path)
    averaging = next(c for c in trainer.callbacks if isinstance(c, AveragedWeights))
    assert trainer.callbacks.index(averaging) < trainer.callbacks.index(alternation)  # its block end sees the average
    recorder = StepWeights()
    trainer.callbacks.append(recorder)
    seen_at_block_end = []
    original = alternation.end_block

    def end_block(trainer_, module_, *args):
        seen_at_block_end.append([p.detach().clone() for p in module_.net.parameters()])
        return original(trainer_, module_, *args)

    alternation.end_block = end_block
    trainer.fit(module, datamodule=datamodule)

    steps_per_epoch = len(datamodule.train_dataloader())
    assert averaging.decay == pytest.approx(1 - 1 / steps_per_epoch)
    assert len(recorder.steps) == 4 * steps_per_epoch and len(seen_at_block_end) == 2
    decay = averaging.decay
    expected = [p.clone() for p in recorder.steps[0]]  # the EMA starts at the first step's weights
    for step, weights in enumerate(recorder.steps[1:], start=2):
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights)]
        if step == 2 * steps_per_epoch:  # the first block end scored the average of its steps
            for got, want in zip(seen_at_block_end[0], expected):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    for got, want in zip(module.net.parameters(), expected):  # the network tested and saved: the average
        torch.testing.assert_close(got.detach(), want, rtol=1e-4, atol=1e-6)
    last = recorder.steps[-1]
    assert any(not torch.allclose(p.detach(), w) for p, w in zip(module.net.parameters(), last))  # not the raw ones


def test_the_model_file_scores_with_the_averaged_network(tmp_path):
    cfg = compose_config(TINY + ["model.average_epochs=1"], tmp_path)
    metrics = run(cfg, tmp_path)
    detector = load_detector(tmp_path / "model.pt")
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for name, value in detector.net.state_dict().items():  # the checkpoint's weights are the averaged ones
        torch.testing.assert_close(value, checkpoint["state_dict"][f"net.{name}"])
    raw = checkpoint["callbacks"]["AveragedWeights"]["average"]  # the raw weights the next block would train
    assert any(not torch.equal(raw[f"module.{name}"], value)
               for name, value in detector.net.state_dict().items() if f"module.{name}" in raw)
    assert math.isclose(float(detector.threshold), metrics["threshold"], rel_tol=1e-6)


def test_a_resumed_run_with_averaged_weights_gives_the_same_result(tmp_path):
    common = TINY + ["model.average_epochs=1", "alternation.block_epochs=2", "alternation.auc_target=1.0"]
    full = run(compose_config(common + ["alternation.max_blocks=2"], tmp_path), tmp_path / "full")
    assert run(compose_config(common + ["alternation.max_blocks=1"], tmp_path), tmp_path / "first")["blocks"] == 1
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = run(compose_config(common + ["alternation.max_blocks=2", f"ckpt_path={last}"], tmp_path),
                  tmp_path / "resumed")
    assert resumed["blocks"] == 2
    assert math.isclose(resumed["threshold"], full["threshold"], rel_tol=1e-5)
    for key in ("auc", "f1", "accuracy"):
        assert math.isclose(resumed["test"][key], full["test"][key], abs_tol=1e-6)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "true", "'one'"])
def test_a_bad_reach_is_refused_naming_the_setting(tmp_path, value):
    with pytest.raises(ConfigError, match=r"model\.average_epochs=.* must be a number of epochs > 0"):
        run(compose_config(TINY + [f"model.average_epochs={value}"], tmp_path), tmp_path)


def test_a_checkpoint_written_before_the_setting_resumes_without_it_and_refuses_it(tmp_path):
    common = TINY + ["alternation.block_epochs=2", "alternation.auc_target=1.0"]
    run(compose_config(common + ["alternation.max_blocks=1"], tmp_path), tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    del checkpoint["config"]["model"]["average_epochs"]  # as an earlier rdcae wrote it
    torch.save(checkpoint, last)
    resumed = run(compose_config(common + ["alternation.max_blocks=2", f"ckpt_path={last}"], tmp_path),
                  tmp_path / "resumed")
    assert resumed["blocks"] == 2
    with pytest.raises(ConfigError, match=r"model\.average_epochs=1 \(trained with <unset>\)"):
        run(compose_config(common + ["alternation.max_blocks=2", f"ckpt_path={last}", "model.average_epochs=1"],
                           tmp_path), tmp_path / "refused")
