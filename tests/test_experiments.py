"""The experiment configs reproduce the paper's tables: the right sweeps, launchers that run them,
and every experiment trains end to end when shrunk to seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONF, TINY, compose_config
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from rdcae.baselines import PAPER_METHODS
from rdcae.train import run

REPO = CONF.parent
TABLES = ["table1", "table2", "table3", "table4"]
PAPER_FABRICS = {"00", "01", "02", "03", "04", "06"}
# One block of one epoch, no figures: each experiment's own code path in a few seconds.
SECONDS = TINY + ["alternation.block_epochs=1", "alternation.max_blocks=1", "figures=false"]
# One torch thread: on a shared 2-core machine a second thread makes small ops wait for a busy
# core (64×64 Julia patterns took 19 s instead of 0.1 s).
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def compose_with_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def sweep_jobs(cfg, *arguments: str) -> list[dict[str, str]]:
    """The jobs Hydra's basic sweeper makes from the config's sweep params and these arguments, as key -> value."""
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()] + list(arguments)
    overrides = OverridesParser.create().parse_overrides(params)
    batches = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return [dict(o.split("=", 1) for o in job) for batch in batches for job in batch]


def compose_job(experiment: str, job: dict[str, str], *extra: str):
    return compose_config([f"experiment={experiment}", *(f"{k}={v}" for k, v in job.items()), *extra])


@pytest.mark.parametrize("experiment", TABLES)
def test_experiment_selects_joblib_and_composes_with_submitit(experiment):
    local = compose_with_hydra(f"experiment={experiment}")
    assert local.hydra.launcher._target_.endswith("JoblibLauncher")
    assert local.hydra.launcher.n_jobs == -1  # one process per core; loky gives each one thread per core it owns
    slurm = compose_with_hydra(f"experiment={experiment}", "hydra/launcher=submitit_slurm",
                               "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90")
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher")
    assert (slurm.hydra.launcher.partition, slurm.hydra.launcher.timeout_min) == ("gpu", 90)
    assert OmegaConf.to_container(slurm.hydra.sweeper.params) == OmegaConf.to_container(local.hydra.sweeper.params)


def test_table1_sweeps_the_papers_lambdas_over_fabrics_and_seeds():
    cfg = compose_with_hydra("experiment=table1")
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 5 * 6 * 3
    assert {float(j["lambda"]) for j in jobs} == {1.0, 1.55, 1.6, 1.65, 2.5}
    assert {j["fabric"] for j in jobs} == PAPER_FABRICS
    assert {int(j["seed"]) for j in jobs} == {0, 1, 2}
    assert (cfg.dataset.name, cfg.noise_ratio, cfg.patch_size) == ("aitex", 3, 32)
    assert cfg.noise._target_.endswith("JuliaNoise")


def test_table2_pairs_each_patch_size_with_its_lambda_not_the_cross_product():
    cfg = compose_with_hydra("experiment=table2")
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 2 * 6 * 3
    assert {j["fabric"] for j in jobs} == PAPER_FABRICS
    pairs = {(c.patch_size, c["lambda"]) for c in (compose_job("table2", j)
                                                   for j in jobs if j["seed"] == "0" and j["fabric"] == "03")}
    assert pairs == {(32, 1.6), (64, 6.7)}
    ksdd2 = {(c.patch_size, c["lambda"]) for c in (compose_job("table2", j, "dataset=ksdd2")
                                                   for j in jobs if j["seed"] == "0" and j["fabric"] == "03")}
    assert ksdd2 == {(32, 1.6), (64, 3.3)}


def test_table2_lambda_given_on_the_command_line_wins():
    assert compose_job("table2", {"patch_size": "64"}, "lambda=2.0")["lambda"] == 2.0


def test_table3_compares_julia_with_gaussian_at_a_fixed_630_iterations():
    cfg = compose_with_hydra("experiment=table3")
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 2 * 6 * 3
    assert {j["noise"] for j in jobs} == {"julia", "gaussian"}
    assert {j["fabric"] for j in jobs} == PAPER_FABRICS
    assert cfg.noise_ratio == 5
    a = cfg.alternation
    assert a.block_epochs * a.max_blocks + a.max_blocks == 630  # 600 Adam epochs and one S-update per block
    assert a.auc_target == 1.0 and a.patience is None  # no stop before the last block: every run has the same length
    assert cfg.model.clean_targets is False  # the noise is left for S to find, not taken off the targets
    assert compose_job("table3", {"noise": "gaussian"}).noise._target_.endswith("GaussianNoise")
    assert compose_job("table3", {"noise": "julia"}).noise._target_.endswith("JuliaNoise")


def test_table4_runs_every_baseline_of_the_paper_over_fabrics_and_seeds():
    cfg = compose_with_hydra("experiment=table4")
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 6 * 3
    assert {j["fabric"] for j in jobs} == PAPER_FABRICS
    assert tuple(cfg.baselines) == PAPER_METHODS
    assert (cfg["lambda"], cfg.dataset.name, cfg.patch_size) == (1.6, "aitex", 32)


def test_command_line_sweep_overrides_replace_the_experiments():
    cfg = compose_with_hydra("experiment=table1")
    jobs = sweep_jobs(cfg, "fabric=00", "lambda=1.6")  # e.g. the KSDD2 rows: one fabric value
    assert len(jobs) == 3 and {(j["fabric"], j["lambda"]) for j in jobs} == {("00", "1.6")}


def test_submitit_slurm_config_prints_from_the_command_line():
    out = subprocess.run(
        [sys.executable, "-m", "rdcae.train", "experiment=table1", "hydra/launcher=submitit_slurm",
         "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90", "--cfg", "hydra"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=ONE_THREAD_ENV,
    )
    assert out.returncode == 0, out.stderr
    assert "SlurmLauncher" in out.stdout and "partition: gpu" in out.stdout


def _one_job(experiment: str, pick: dict[str, str], tmp_path: Path):
    """The experiment's config for one of its jobs, shrunk and on the embedded synthetic fabric."""
    cfg = compose_with_hydra(f"experiment={experiment}")
    job = next(j for j in sweep_jobs(cfg) if all(j[k] == v for k, v in pick.items()))
    cfg = compose_job(experiment, job, "dataset=woven", *SECONDS)
    with open_dict(cfg):
        cfg.cache_dir = str(tmp_path / "cache")
    return cfg


@pytest.mark.parametrize(("experiment", "pick", "expect"), [
    ("table1", {"lambda": "2.5", "seed": "1"}, {"lambda": 2.5, "seed": 1}),
    ("table2", {"patch_size": "64", "seed": "0"}, {"lambda": 6.7, "patch_size": 64}),
    ("table3", {"noise": "gaussian", "seed": "0"},
     {"noise._target_": "rdcae.noise.GaussianNoise", "alternation.auc_target": 1.0}),
])
def test_each_experiment_runs_one_job_in_seconds(experiment, pick, expect, tmp_path, one_thread):
    cfg = _one_job(experiment, pick, tmp_path)
    metrics = run(cfg, tmp_path / "run")
    saved = OmegaConf.load(tmp_path / "run" / "config.yaml")
    assert {k: OmegaConf.select(saved, k) for k in expect} == expect
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["blocks"] == 1


def test_table4_job_runs_rdcae_and_every_baseline(tmp_path, one_thread):
    cfg = _one_job("table4", {"fabric": "03", "seed": "0"}, tmp_path)
    run(cfg, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    assert sorted(metrics["baselines"]) == sorted(PAPER_METHODS)
    for method in PAPER_METHODS:
        assert 0.0 <= metrics["baselines"][method]["auc"] <= 1.0, method


def test_joblib_multirun_of_an_experiment_writes_one_folder_per_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    out = subprocess.run(
        [sys.executable, "-m", "rdcae.train", "-m", "experiment=table1", "dataset=woven", "fabric=03", "lambda=1.6",
         "seed=0,1", *SECONDS, f"hydra.sweep.dir={sweep_dir}", f"cache_dir={tmp_path / 'cache'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=ONE_THREAD_ENV,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Joblib.Parallel" in out.stdout + out.stderr  # the experiment's default launcher ran the jobs
    for job in ("0", "1"):
        assert (sweep_dir / job / "metrics.json").is_file()
    seeds = {OmegaConf.load(sweep_dir / job / "config.yaml").seed for job in ("0", "1")}
    assert seeds == {0, 1}
