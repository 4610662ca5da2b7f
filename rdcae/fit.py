"""One RDCAE run, trained and tested: what `python -m rdcae.train` (rdcae/train.py) runs once Hydra has
composed its config.

Check every setting (rdcae.config) → patches and synthetic defects (DataModule) → alternation of Adam
blocks and S-updates (Alternation callback) until its stop → test on held-out normals and real defects →
metrics.json, the detector file, figures, TensorBoard.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from rdcae.baselines import run_baselines
from rdcae.config import RunSettings, check_resume, validate
from rdcae.data.datamodule import DefectDataModule
from rdcae.data.images import SEEN, looks_gray
from rdcae.data.lighting import FABRIC_LEVELS, LIGHTING_ON_FABRIC, LIGHTING_REFERENCE
from rdcae.data.patches import calibration_sources
from rdcae.data.sources import load_sources, quiet_data
from rdcae.errors import ConfigError
from rdcae.inference import load_detector, save_detector
from rdcae.inference.detector import Detector
from rdcae.inference.image import overlap_calibration
from rdcae.metrics.operating_point import image_operating_point
from rdcae.model.alternation import Alternation
from rdcae.model.averaging import AveragedWeights
from rdcae.model.network import chunk_size_for
from rdcae.model.robust import RobustAutoencoder
from rdcae.model.score import AUTO
from rdcae.results.figures import write_detection_figures, write_run_figures
from rdcae.results.summary import describe_operating_point, hparams, run_metrics, summary, write_metrics


class _WithoutTips(logging.Filter):
    """Every Trainer advertises Lightning's cloud logger; a run's output should be its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_WithoutTips())
# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates, once per fit: nothing a user can act on
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
# the model summary's size estimate under bf16-mixed, where the weights stay fp32 and its 32-bit guess is right
warnings.filterwarnings("ignore", message=r"Precision bf16-mixed is not supported by the model summary")


class BlockLines(Callback):
    """One line per block of the alternation: on the console where it is no terminal (a log file, CI), in
    place of a progress bar whose redraws would pile up there (`echo`), and in the run's train.log (`log_path`,
    where Hydra keeps one), which a progress bar never reaches."""

    def __init__(self, alternation: Alternation, echo: bool = True, log_path: Path | None = None) -> None:
        self.alternation, self.shown, self.start = alternation, 0, time.perf_counter()
        self.echo, self.log_path = echo, log_path

    def on_train_start(self, trainer: L.Trainer, module: RobustAutoencoder) -> None:
        # after the alternation's: a resumed run's earlier blocks are its history already
        self.shown, self.start = len(self.alternation.history), time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: RobustAutoencoder) -> None:
        for record in self.alternation.history[self.shown:]:  # the block the alternation has just ended
            validation = f", validation AUC {record.validation_auc:.4f}" if math.isfinite(record.validation_auc) else ""
            line = (f"block {record.block} of at most {self.alternation.max_blocks} (epoch {record.epoch}): loss "
                    f"{record.loss:.4f}, train AUC {record.train_auc:.4f}{validation}, "
                    f"{time.perf_counter() - self.start:.0f} s")
            if self.echo:
                print(line, flush=True)
            if self.log_path is not None and self.log_path.is_file():
                with open(self.log_path, "a") as log_file:
                    log_file.write(line + "\n")
        self.shown = len(self.alternation.history)


class AtomicCheckpointIO(TorchCheckpointIO):
    """A checkpoint is written beside its path and renamed into place: a run killed while saving
    leaves the previous last.ckpt whole."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        tmp = Path(f"{path}.{os.getpid()}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


def check_trainer(cfg: DictConfig) -> None:
    """Lightning's Trainer built once, quietly, from the run's trainer settings (as validate settled them:
    trainer.precision=auto is made concrete there) before any data is read: a setting it refuses is one line
    naming it (ConfigError), not a Hydra error after the data."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:  # its "GPU available" lines come with the run's own trainer, after the data
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            instantiate(cfg.trainer, max_epochs=1, logger=False, enable_checkpointing=False, callbacks=[])
    except InstantiationException as error:
        cause = error.__cause__ or error
        detail = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        raise ConfigError(f"trainer.*: Lightning's Trainer cannot start with these settings ({detail}); see "
                          "https://lightning.ai/docs/pytorch/stable/common/trainer.html#trainer-flags") from error
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def build(cfg: DictConfig, output_dir: Path, settings: RunSettings | None = None):
    """The DataModule, the module, the alternation and the trainer of one run (`settings`: validate(cfg))."""
    settings = settings or validate(cfg)
    alternation = Alternation(settings.alternation, settings.threshold_quantile)
    check_trainer(cfg)
    datamodule = DefectDataModule(cfg, instantiate(cfg.noise), batch_size=int(cfg.model.batch_size))
    datamodule.setup("fit")
    if cfg.model.score == AUTO and not len(datamodule.validation_x):
        warnings.warn("model.score=auto has no held-out synthetic defects to choose by "
                      "(dataset.n_calibration=0 or noise=none): "
                      "the run scores with norm, the paper's ‖x − x̂‖₂", stacklevel=2)
    module = RobustAutoencoder.from_config(cfg, datamodule.train_x)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    module.run_config[LIGHTING_ON_FABRIC] = True  # so that a resume can tell a checkpoint lit otherwise
    checkpoints = ModelCheckpoint(
        dirpath=output_dir / "checkpoints", filename="epoch{epoch:03d}", every_n_epochs=alternation.block_epochs,
        save_top_k=1, monitor=None, save_last=True, auto_insert_metric_name=False,
    )
    logger = TensorBoardLogger(save_dir=str(output_dir), name="tensorboard", version="", default_hp_metric=False)
    callbacks, shown = [alternation, checkpoints], {}
    if cfg.model.get("average_epochs") is not None:  # before the alternation, whose block end uses the average
        callbacks.insert(0, AveragedWeights(cfg.model.average_epochs, alternation.block_epochs))
    echo = cfg.trainer.get("enable_progress_bar", True) and not sys.stdout.isatty()
    callbacks.append(BlockLines(alternation, echo, output_dir / "train.log"))  # after the alternation: the block ended
    if echo:
        shown = {"enable_progress_bar": False}
    trainer = instantiate(
        cfg.trainer, max_epochs=alternation.max_epochs, callbacks=callbacks, logger=logger,
        default_root_dir=str(output_dir), plugins=[AtomicCheckpointIO()], **shown,
    )
    return datamodule, module, alternation, trainer


def detector_config(cfg: DictConfig, datamodule: DefectDataModule) -> dict:
    """The resolved run config, as the detector file keeps it, with what detection must know of the training
    images beyond it: their colour, the images trained or calibrated on, that their lighting was measured on the
    fabric alone (model files written before that measured it over the whole image), and, where no lighting is
    evened out, the range of their fabric's gray levels (with dataset.lighting=gain, the level each image is
    scaled to)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for node in (config, config.get("dataset") or {}):  # an evaluation from any folder finds the images
        if node.get("data_dir"):
            node["data_dir"] = str(Path(str(node["data_dir"])).expanduser().resolve())
    config["image_channels"] = 1 if looks_gray(datamodule.patches.train_normal, axis=1) else 3  # the images' colour
    config[LIGHTING_ON_FABRIC] = True
    if SEEN in datamodule.patches.stats:  # the images it trained or calibrated on, which an evaluation leaves out
        config[SEEN] = datamodule.patches.stats[SEEN]
    # their fabric's gray levels: what detection compares a new image's with, or scales them to (lighting=gain)
    for key in (FABRIC_LEVELS, LIGHTING_REFERENCE):
        if key in datamodule.patches.stats:
            config[key] = datamodule.patches.stats[key]
    return config


def with_overlap_calibration(point, module, cfg, config: dict):
    """The image operating point with the calibration of detection's overlap mode: the tile scores of the
    defect-free images the calibration patches come from (rdcae.inference.image.overlap_calibration)."""
    if point is None:
        return None
    detector = Detector(copy.deepcopy(module.net).eval(), float(module.threshold), config, score=module.score_kind,
                        score_width=int(module.hparams.score_width), operating_point=point).to(module.device)
    with quiet_data():  # the patches have read these images already, and said what was odd about them
        images = [s.image for s in calibration_sources(cfg.dataset, int(cfg.patch_size))]
    scores = overlap_calibration(detector, images, len(point.scores))
    return point.with_overlap(scores) if len(scores) >= 20 else point


def run(cfg: DictConfig, output_dir: str | Path) -> dict:
    """Train, test and write everything a run leaves behind; returns the metrics dict."""
    settings = validate(cfg)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    start = time.perf_counter()

    if cfg.get("ckpt_path"):
        check_resume(cfg, cfg.ckpt_path)
    datamodule, module, alternation, trainer = build(cfg, output_dir, settings)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except SystemExit:  # Lightning exits on Ctrl-C after its graceful shutdown
        if not trainer.interrupted:
            raise
        last = trainer.checkpoint_callback.last_model_path
        raise SystemExit("training interrupted; " + (f"resume with the same settings and ckpt_path={last}" if last else
                                                      "no checkpoint was saved yet (one is saved at every block end)"))
    device = str(trainer.strategy.root_device)  # Lightning moves the module back to the CPU after fit
    fit_seconds = time.perf_counter() - start
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    module.to(trainer.strategy.root_device)

    metrics = run_metrics(module, datamodule, alternation, trainer, test, fit_seconds, device)
    if settings.baselines:  # Table 4: the other methods on the same patches, trained for the epochs RDCAE used
        metrics["baselines"] = run_baselines(
            cfg, datamodule, epochs=max(trainer.current_epoch, 1), methods=list(settings.baselines),
            output_dir=output_dir, writer=trainer.logger.experiment, reference={"rdcae": module.test_scores},
        )
    point = image_operating_point(lambda x: module.error_and_score(x, chunk_size_for(module.device))[1], datamodule,
                                  settings.false_alarms_per_image)
    config = detector_config(cfg, datamodule)
    point = with_overlap_calibration(point, module, cfg, config)
    metrics["image_operating_point"] = describe_operating_point(point)
    write_metrics(metrics, output_dir / "metrics.json")
    save_detector(output_dir / "model.pt", module.net, float(module.threshold), module.score_kind,
                  int(module.hparams.score_width), config, point)
    final = {f"hparam/{k}": v for k, v in metrics["test"].items() if k in ("auc", "f1", "accuracy")}
    final["hparam/validation_auc"] = metrics.get("validation_auc", math.nan)  # the label-free one
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # run() called from Python, not through Hydra
        overrides = []
    trainer.logger.log_hyperparams(hparams(cfg, overrides, metrics.get("score")), metrics=final)
    if cfg.get("figures", True):
        write_run_figures(module, datamodule, trainer.logger.experiment, output_dir, step=alternation.blocks,
                          auc=metrics["test"].get("auc", math.nan))
        with quiet_data():
            sources = load_sources(cfg.dataset)
        write_detection_figures(load_detector(output_dir / "model.pt"), sources, trainer.logger.experiment,
                                output_dir, step=alternation.blocks)
    trainer.logger.experiment.flush()  # written after the trainer closed its writer: on disk before the run ends
    text = summary(metrics, output_dir, dataset=str(cfg.dataset.name))
    print(text)
    if (output_dir / "train.log").is_file():  # Hydra's log of the run: the summary too, as the console showed it
        with open(output_dir / "train.log", "a") as log_file:
            log_file.write(text.lstrip("\n") + "\n")
    return metrics
