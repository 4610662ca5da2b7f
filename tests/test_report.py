"""`python -m rdcae.report` turns a sweep into the paper's tables: one row per setting, mean ± std
over seeds from the jobs' metrics.json, the paper's value beside it."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF, TINY, compose_config
from omegaconf import OmegaConf, open_dict

from rdcae.paper import tables as paper_results
from rdcae.paper.report import ReportError, build_report, detect_table, load_runs, main

REPO = CONF.parent
PAPER = REPO.parent / "shared" / "paper" / "alpdemir2022-rdcae.txt"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A real multirun: λ 1.0 and 1.6 × seeds 0 and 1, one block of one epoch each."""
    root = tmp_path_factory.mktemp("report")
    out = subprocess.run(
        [sys.executable, "-m", "rdcae.train", "-m", "lambda=1.0,1.6", "seed=0,1", *TINY,
         "alternation.block_epochs=1", "alternation.max_blocks=1", "figures=false",
         f"hydra.sweep.dir={root / 'sweep'}", f"cache_dir={root / 'cache'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "sweep"


def job_metrics(sweep: Path) -> dict[float, list[dict]]:
    """test metrics of every job, by λ, read straight from the job folders."""
    by_lambda: dict[float, list[dict]] = {}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        lam = float(OmegaConf.load(job / "config.yaml")["lambda"])
        by_lambda.setdefault(lam, []).append(json.loads((job / "metrics.json").read_text())["test"])
    return by_lambda


def test_one_row_per_lambda_with_mean_and_std_over_two_seeds(sweep):
    report = build_report([sweep])
    assert report.table == 1  # only λ varies: the λ table
    assert "No row has the paper's numbers beside it: the paper ran none of these" in report.markdown  # woven
    assert [row["lambda"] for row in report.rows] == [1.0, 1.6]
    expected = job_metrics(sweep)
    for row in report.rows:
        assert (row["n_seeds"], row["seeds"]) == (2, "0 1")
        for metric in ("auc", "f1", "accuracy"):
            values = [m[metric] for m in expected[row["lambda"]]]
            assert row[f"{metric}_mean"] == pytest.approx(np.mean(values))
            assert row[f"{metric}_std"] == pytest.approx(np.std(values, ddof=0))


def test_a_seed_run_twice_with_the_same_settings_counts_once(sweep, tmp_path):
    import shutil

    job = next(p for p in sorted(sweep.iterdir()) if (p / "metrics.json").is_file())
    shutil.copytree(job, tmp_path / "again" / "0")  # the same run again, e.g. with baselines beside it
    with pytest.warns(UserWarning, match="each seed counted once, left out: .*again"):
        report = build_report([sweep, tmp_path / "again"])
    assert [(row["n_seeds"], row["seeds"]) for row in report.rows] == [(2, "0 1"), (2, "0 1")]


def test_the_whole_image_metrics_of_runs_that_were_evaluated_are_averaged_beside_the_patch_metrics(sweep, tmp_path):
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    jobs = sorted(p for p in copy.iterdir() if (p / "metrics.json").is_file())
    values = {}
    for i, job in enumerate(jobs[:-1]):  # the last job was never evaluated
        (job / "detect").mkdir()
        values[job.name] = {"image_auroc": 0.5 + 0.1 * i, "pixel_auroc": 0.9, "pixel_aupro": None}
        (job / "detect" / "evaluation.json").write_text(json.dumps(values[job.name]))
    report = build_report([copy])
    for row in report.rows:
        members = [j for j in jobs if float(OmegaConf.load(j / "config.yaml")["lambda"]) == row["lambda"]]
        expected = [values[j.name]["image_auroc"] for j in members if j.name in values]
        assert row["image_auroc_mean"] == pytest.approx(np.mean(expected)) and row["image_auroc_n"] == len(expected)
        assert row["pixel_aupro_n"] == 0
    assert "| image AUROC | pixel AUROC | paper AUC |" in report.markdown  # AUPRO: no run has one
    assert "(n=1)" in report.markdown  # a row with one of its two seeds evaluated says so
    assert "image_auroc_mean" not in build_report([sweep]).columns  # no evaluation, no column


def test_the_label_free_validation_auc_is_a_column_averaged_over_seeds(sweep):
    report = build_report([sweep])
    for row in report.rows:
        values = [json.loads((job / "metrics.json").read_text())["validation_auc"] for job in sorted(sweep.iterdir())
                  if job.is_dir() and float(OmegaConf.load(job / "config.yaml")["lambda"]) == row["lambda"]]
        assert row["validation_auc_mean"] == pytest.approx(np.mean(values))
    assert "validation AUC (synthetic)" in report.markdown.splitlines()[4]


def test_the_scores_the_runs_used_are_counted_per_row(sweep):
    report = build_report([sweep])
    for row in report.rows:
        used = [json.loads((job / "metrics.json").read_text())["score"] for job in sorted(sweep.iterdir())
                if job.is_dir() and float(OmegaConf.load(job / "config.yaml")["lambda"]) == row["lambda"]]
        assert row["scores"] == ", ".join(f"{kind} ×{used.count(kind)}" for kind in sorted(set(used)))
    header = report.markdown.splitlines()[4]
    assert ("| score |" in header) == any(row["scores"] != "norm ×2" for row in report.rows)


def test_where_data_and_cache_live_does_not_split_rows(sweep):
    report = build_report([sweep])
    assert "cache_dir" not in report.columns and len(report.rows) == 2
    # nor what is shown or where it ran: the sweep set the progress bar and the accelerator
    assert not {"trainer.enable_progress_bar", "trainer.accelerator"} & set(report.columns)


def test_command_writes_markdown_and_csv_and_prints_the_table(sweep, tmp_path, capsys):
    assert main([str(sweep), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| λ |" in printed
    assert (tmp_path / "report.md").read_text().strip() in printed
    with (tmp_path / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["lambda"]) for r in rows] == [1.0, 1.6]
    assert all(r["n_seeds"] == "2" for r in rows)


def test_per_defect_image_tables_average_each_image_over_seeds(sweep):
    report = build_report([sweep])
    section = report.markdown.split("## Per defect image: dataset woven, λ 1.6,")[1].split("##")[0]
    assert "(2 seeds)" in section.splitlines()[0]
    by_lambda = {}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        lam = float(OmegaConf.load(job / "config.yaml")["lambda"])
        by_lambda.setdefault(lam, []).append(json.loads((job / "metrics.json").read_text())["per_defect_image"])
    first_image = by_lambda[1.6][0][0]
    aucs = [next(r["auc"] for r in rows if r["image"] == first_image["image"]) for rows in by_lambda[1.6]]
    line = next(candidate for candidate in section.splitlines() if candidate.startswith(f"| {first_image['image']} |"))
    assert f"| {first_image['tiles']} | {np.mean(aucs):.3f} ± {np.std(aucs):.3f} |" in line


def test_unfinished_jobs_are_skipped_with_a_warning_naming_them(sweep, tmp_path):
    copy = shutil.copytree(sweep, tmp_path / "sweep")
    unfinished = next(job for job in sorted(copy.iterdir())
                      if job.is_dir() and OmegaConf.load(job / "config.yaml")["lambda"] == 1.6)
    (unfinished / "metrics.json").unlink()
    with pytest.warns(UserWarning, match=re.escape(str(unfinished))):
        report = build_report([copy])
    assert {row["lambda"]: row["n_seeds"] for row in report.rows} == {1.0: 2, 1.6: 1}


def test_an_empty_folder_is_an_error_naming_it(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(ReportError, match=re.escape(str(empty))):
        build_report([empty])
    assert main([str(empty)]) == 2


def test_a_folder_of_only_unfinished_jobs_is_an_error(tmp_path):
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    with pytest.warns(UserWarning, match="unfinished"), pytest.raises(ReportError, match="no finished runs"):
        load_runs([tmp_path])


# ---------------------------------------------------------------- the paper's numbers


def test_paper_lookup_finds_the_row_with_the_same_dataset_and_settings():
    fabric_03 = {"lambda": 1.6, "patch_size": 32, "noise": "julia", "noise_ratio": 3, "model": "rdcae"}
    assert paper_results.lookup(1, "aitex", "03", "rdcae", fabric_03).metrics == {
        "auc": (1.0, 0.0), "f1": (1.0, 0.0), "accuracy": (1.0, 0.0)}
    assert paper_results.lookup(1, "aitex", "00", "rdcae", {**fabric_03, "lambda": 1.0}).metrics["f1"] == (0.208, 0.006)
    assert paper_results.lookup(2, "aitex", "00", "rdcae",
                                {**fabric_03, "lambda": 6.7, "patch_size": 64}).metrics["auc"] == (0.132, 0.012)
    assert paper_results.lookup(2, "ksdd2", None, "rdcae",
                                {**fabric_03, "lambda": 3.3, "patch_size": 64}).metrics["auc"] == (0.814, 0.023)
    assert paper_results.lookup(3, "aitex", "00", "rdcae",
                                {**fabric_03, "noise": "gaussian", "noise_ratio": 5}).metrics["auc"] == (0.618, 0.137)
    assert paper_results.lookup(4, "aitex", "06", "iforest_aere", fabric_03).metrics == {"auc": (0.777, 0.074)}


def test_paper_lookup_has_nothing_for_settings_the_paper_did_not_run():
    fabric_03 = {"lambda": 1.6, "patch_size": 32, "noise": "julia", "noise_ratio": 3, "model": "rdcae"}
    assert paper_results.lookup(1, "aitex", "03", "rdcae", {**fabric_03, "lambda": 2.0}) is None
    assert paper_results.lookup(1, "aitex", "03", "rdcae", {**fabric_03, "noise_ratio": 5}) is None
    assert paper_results.lookup(1, "aitex", "05", "rdcae", fabric_03) is None      # fabric 05 is in no table
    assert paper_results.lookup(1, "woven", None, "rdcae", fabric_03) is None
    # 64 goes with λ 6.7
    assert paper_results.lookup(2, "aitex", "03", "rdcae", {**fabric_03, "patch_size": 64}) is None
    assert paper_results.lookup(4, "aitex", "03", "deep_svdd_soft", fabric_03) is None


def paper_table_cells(table: int) -> list[list[str]]:
    """The table's rows in the paper's text, tab-separated cells, blank dataset cells filled from above."""
    lines = PAPER.read_text(encoding="utf-8").splitlines()
    header = paper_results.parse_cells(paper_results.TABLES[table])[0]
    start = lines.index("\t".join(header))
    rows = []
    for line in lines[start:]:
        if "\t" not in line:
            break
        cells = [re.sub(r"</?i>", "", c).strip() for c in line.split("\t")]
        cells[0] = cells[0] or rows[-1][0]
        rows.append(cells)
    return rows


@pytest.mark.parametrize("table", sorted(paper_results.TABLES))
def test_transcribed_tables_match_the_paper_text_cell_for_cell(table):
    if not PAPER.is_file():
        pytest.skip(f"paper text not present ({PAPER})")
    assert paper_results.parse_cells(paper_results.TABLES[table]) == paper_table_cells(table)


def test_every_paper_row_becomes_a_result():
    counts = {t: len(rs) for t, rs in paper_results.RESULTS.items()}
    assert counts == {1: 35, 2: 14, 3: 14, 4: 7 * 7}


# ---------------------------------------------------------------- Table 4 layout


def write_run(folder: Path, cfg, auc: float, baselines: dict[str, float]) -> None:
    """A finished job as rdcae.train.run leaves it: resolved config.yaml and metrics.json."""
    folder.mkdir(parents=True)
    OmegaConf.save(cfg, folder / "config.yaml", resolve=True)
    metrics = {"test": {"auc": auc, "f1": auc - 0.1, "accuracy": auc - 0.2},
               "baselines": {m: {"auc": a, "f1": None, "accuracy": None} for m, a in baselines.items()}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_a_single_seed_shows_its_value_without_a_spread(tmp_path):
    cfg = compose_config(["data_dir=/nowhere"])
    write_run(tmp_path / "0", cfg, 0.9, {})
    report = build_report([tmp_path])
    row = [line for line in report.markdown.splitlines() if "| 0.900 |" in line]
    assert row and "±" not in row[0] and "| 0.800 |" in row[0]  # AUC and F1, each alone
    write_run(tmp_path / "1", cfg, 0.9, {})  # a second seed: mean ± std again
    with open_dict(cfg):
        cfg.seed = 1
    OmegaConf.save(cfg, tmp_path / "1" / "config.yaml", resolve=True)
    assert "0.900 ± 0.000" in build_report([tmp_path]).markdown


def test_table4_metrics_give_one_column_per_method_beside_the_paper(tmp_path):
    cfg = compose_config(["experiment=table4", "data_dir=/nowhere"])
    aucs = {("00", 0): 0.90, ("00", 1): 0.94, ("03", 0): 0.80, ("03", 1): 0.82}
    for i, ((fabric, seed), auc) in enumerate(aucs.items()):
        with open_dict(cfg):
            cfg.fabric, cfg.seed = fabric, seed
        write_run(tmp_path / str(i), cfg, auc, {"dcae": auc - 0.05, "deep_svdd": 0.5, "iforest_aere": 0.6 + seed / 10})

    report = build_report([tmp_path])
    assert report.table == 4
    assert [row["fabric"] for row in report.rows] == ["00", "03"]
    assert "No row has the paper's numbers" not in report.markdown  # the paper's Table 4 is beside them
    fabric_00 = report.rows[0]
    assert fabric_00["rdcae_auc_mean"] == pytest.approx(0.92) and fabric_00["rdcae_auc_std"] == pytest.approx(0.02)
    assert fabric_00["dcae_auc_mean"] == pytest.approx(0.87)
    assert fabric_00["iforest_aere_auc_mean"] == pytest.approx(0.65)
    assert (fabric_00["paper_rdcae_auc_mean"], fabric_00["paper_rdcae_auc_std"]) == (1.0, 0.0)
    assert (fabric_00["paper_dcae_auc_mean"], fabric_00["paper_dcae_auc_std"]) == (0.973, 0.026)
    assert ((report.rows[1]["paper_iforest_aere_auc_mean"], report.rows[1]["paper_iforest_aere_auc_std"])
            == (0.873, 0.011))
    header = report.markdown.splitlines()[4]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "dataset", "fabric", "n", "Robust DCAE", "paper", "DCAE", "paper", "Deep SVDD", "paper", "ISOF-AERE", "paper"]
    assert "0.920 ± 0.020 | 1.000 ± 0.000" in report.markdown


def test_an_aitex_row_of_a_lambda_sweep_shows_the_papers_table1_values(tmp_path):
    cfg = compose_config(["experiment=table1", "data_dir=/nowhere", "fabric=03"])
    for i, (lam, seed) in enumerate([(1.0, 0), (1.0, 1), (1.6, 0)]):
        with open_dict(cfg):
            cfg["lambda"], cfg.seed = lam, seed
        folder = tmp_path / str(i)
        write_run(folder, cfg, 0.9, {})
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text(f"- lambda={lam}\n- seed={seed}\n"
                                                          "- fabric=03\n- data_dir=/nowhere\n")
    report = build_report([tmp_path])
    assert report.table == 1
    by_lambda = {row["lambda"]: row for row in report.rows}
    assert (by_lambda[1.0]["paper_f1_mean"], by_lambda[1.0]["paper_f1_std"]) == (0.865, 0.011)
    assert (by_lambda[1.6]["paper_auc_mean"], by_lambda[1.6]["n_seeds"]) == (1.0, 1)
    assert "| aitex | 03 | 1.0 | 3 | julia | 2 |" in report.markdown


@pytest.mark.parametrize(("overrides", "table"), [
    ({"lambda": [1.0, 1.6]}, 1), ({"patch_size": [32, 64], "lambda": [1.6, 6.7]}, 2),
    ({"noise": ["julia", "gaussian"]}, 3),
])
def test_the_table_follows_from_what_the_sweep_varies(overrides, table, tmp_path):
    for i in range(len(next(iter(overrides.values())))):
        cfg = compose_config(["dataset=aitex", "data_dir=/nowhere", *(f"{k}={v[i]}" for k, v in overrides.items())])
        write_run(tmp_path / str(i), cfg, 0.9, {})
    assert detect_table(load_runs([tmp_path])) == table


def test_an_output_folder_the_report_cannot_write_is_one_line(sweep, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main([str(sweep), "--out", str(blocker / "report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: --out {blocker / 'report'}: cannot write the report there")


def test_a_sweeps_variants_are_told_apart_by_what_varies_other_than_seed_and_fabric(tmp_path):
    from rdcae.paper.report import swept_settings

    folders = []
    for i, (clean, seed, fabric) in enumerate([("false", 0, "00"), ("true", 0, "00"), ("false", 1, "03")]):
        folder = tmp_path / str(i)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(
            f"- dataset=aitex\n- fabric={fabric}\n- seed={seed}\n- model.clean_targets={clean}\n")
        folders.append(folder)
    labels = swept_settings(folders)
    assert [labels[f] for f in folders] == ["model.clean_targets=false", "model.clean_targets=true",
                                            "model.clean_targets=false"]
    assert set(swept_settings(folders[::2], ignore=("seed", "fabric", "model.clean_targets")).values()) == {""}
