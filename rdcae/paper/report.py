"""Sweeps → the paper's tables (the command
`python -m rdcae.report <multirun dir> [more dirs] [--table N] [--out DIR]`).

Every finished job folder (config.yaml + metrics.json, as `rdcae.train.run` leaves them) is one
run. Runs that differ only in their seed form one row: mean ± std over the seeds of test AUC,
F1 and accuracy, with the number of seeds, and beside it the paper's value for the same dataset,
fabric and settings (rdcae.paper.tables). Rows are keyed by dataset, AITEX fabric, the paper's
knobs (λ, patch size, noise type, noise ratio, model) and every other setting a job overrode
(.hydra/overrides.yaml), read back from the job's resolved config.yaml; where data and caches
live does not split rows. A Table 4 sweep (runs with baselines) gives one row per dataset and one
column per method instead.

std is the population standard deviation over seeds (ddof=0, numpy's default): the paper does not
say which it used, and ddof=0 stays defined for a single seed. With three seeds the sample std
(ddof=1) is 1.22 times larger.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from rdcae.noise import noise_name
from rdcae.paper import tables as paper_results
from rdcae.paper.tables import METHOD_LABELS, SOURCE, TITLES

METRICS = ("auc", "f1", "accuracy")
# rdcae.detect's whole-image evaluation of a run, where it wrote one into <run>/detect (the metrics anomalib reports)
DETECT = "detect"
IMAGE_METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
IMAGE_METRIC_LABELS = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "pixel_aupro": "AUPRO"}
METRIC_LABELS = {"auc": "AUC", "f1": "F1", "accuracy": "accuracy"}
SETTINGS = ("lambda", "patch_size", "noise", "noise_ratio", "model")  # the paper's knobs, always read
SETTING_LABELS = {"lambda": "λ", "patch_size": "patch size", "noise": "noise type", "noise_ratio": "noise ratio",
                  "model": "model"}
TABLE_SETTINGS = {1: ("lambda", "noise_ratio", "noise"), 2: ("lambda", "patch_size"), 3: ("noise", "noise_ratio"),
                  4: ()}
# Overrides that say where things are, what else to run or how it is shown, not what a result is
# (rdcae.results.summary leaves them out of TensorBoard's hparams too).
CONTEXT = {"seed", "data_dir", "cache_dir", "ckpt_path", "figures", "baselines", "experiment", "dataset", "fabric",
           "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
           "trainer.accelerator", "trainer.devices"}
NOT_SETTINGS = {*CONTEXT, *SETTINGS}  # the report reads SETTINGS always, not as overrides
# Folders inside a run that never hold another run.
_RUN_SUBFOLDERS = {"checkpoints", "figures", "tensorboard"}


class ReportError(ValueError):
    """The folders given do not hold what a report needs."""


@dataclass
class Run:
    folder: Path
    dataset: str
    fabric: str | None          # AITEX fabric code; None for other datasets
    seed: int
    settings: dict              # SETTINGS and the extra overridden keys -> value
    metrics: dict               # metrics.json
    overrides: dict = field(default_factory=dict)   # key -> value string from .hydra/overrides.yaml
    evaluation: dict = field(default_factory=dict)  # <run>/detect/evaluation.json where rdcae.detect wrote one

    def methods(self) -> dict[str, dict]:
        """metric dicts per method: the trained model under its name, then the Table 4 baselines."""
        return {**(self.metrics.get("baselines") or {}), self.settings["model"]: self.metrics.get("test") or {}}


@dataclass
class Report:
    table: int | None           # the paper's table the rows are compared with (None: per row, first match)
    columns: list[str]          # CSV columns
    rows: list[dict]            # one dict per row, full precision
    markdown: str


# ---------------------------------------------------------------- reading runs


def find_run_folders(folder: Path) -> list[Path]:
    """Every job folder under `folder` (itself included): one with config.yaml, metrics.json or .hydra/."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        if ".hydra" in dirnames or "config.yaml" in filenames or "metrics.json" in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []  # a run holds no other run
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _RUN_SUBFOLDERS)
    return sorted(found)


def read_overrides(folder: Path) -> dict[str, str]:
    """key -> value of the job's command-line and sweep overrides (`+key=` and `++key=` as `key`)."""
    path = folder / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, sep, value = str(item).partition("=")
        if sep and not key.startswith("~"):
            out[key.lstrip("+")] = value
    return out


def swept_settings(folders: list[Path], ignore: tuple[str, ...] = ("seed", "fabric")) -> dict[Path, str]:
    """folder -> "key=value ..." of the overrides whose values differ between these runs, less `ignore`
    ("" where none do): the label that tells a sweep's variants apart."""
    overrides = {f: read_overrides(f) for f in folders}
    keys = sorted({k for o in overrides.values() for k in o} - set(ignore))
    varying = [k for k in keys if len({o.get(k) for o in overrides.values()}) > 1]
    return {f: " ".join(f"{k}={o[k]}" for k in varying if k in o) for f, o in overrides.items()}


def _setting_value(cfg: DictConfig, key: str, overrides: dict[str, str]):
    value = OmegaConf.select(cfg, key)
    if isinstance(value, (DictConfig, ListConfig)):  # a config group: the name given, else its content
        return overrides.get(key) or json.dumps(OmegaConf.to_container(value), sort_keys=True)
    return value


def read_run(folder: Path, extra_keys: set[str], overrides: dict[str, str]) -> Run:
    cfg = OmegaConf.load(folder / "config.yaml")
    dataset = str(cfg.dataset.name)
    settings = {
        "lambda": float(cfg["lambda"]),
        "patch_size": int(cfg.patch_size),
        "noise": noise_name(cfg.noise),
        "noise_ratio": cfg.noise_ratio,
        "model": "rdcae" if cfg.model.robust else "dcae",
    }
    settings.update({k: _setting_value(cfg, k, overrides) for k in sorted(extra_keys)})
    return Run(
        folder=folder,
        dataset=dataset,
        fabric=str(cfg.fabric) if dataset == "aitex" else None,
        seed=int(cfg.seed),
        settings=settings,
        metrics=json.loads((folder / "metrics.json").read_text()),
        overrides=overrides,
        evaluation=(json.loads((folder / DETECT / "evaluation.json").read_text())
                    if (folder / DETECT / "evaluation.json").is_file() else {}),
    )


def load_runs(folders: list[str | Path]) -> list[Run]:
    """The finished runs under these folders; unfinished or unreadable jobs are skipped with a warning."""
    candidates = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ReportError(f"{folder}: no such folder "
                              "(give a Hydra multirun folder such as outputs/multirun/<time>)")
        found = find_run_folders(folder)
        if not found:
            raise ReportError(f"{folder}: no run folders in it (a run folder holds config.yaml and metrics.json; "
                              "a Hydra multirun has one per job)")
        candidates += found

    unfinished = [f for f in candidates if not ((f / "metrics.json").is_file() and (f / "config.yaml").is_file())]
    if unfinished:
        warnings.warn(f"skipping {len(unfinished)} unfinished job(s) without metrics.json or config.yaml: "
                      f"{', '.join(map(str, unfinished))}", stacklevel=2)
    finished = [f for f in candidates if f not in unfinished]
    # a half-written or foreign file, or YAML that asks for Python objects (safe loading refuses to build them)
    unreadable_errors = (OSError, ValueError, KeyError, AttributeError, TypeError, yaml.YAMLError)
    overrides, unreadable = {}, []
    for folder in finished:
        try:
            overrides[folder] = read_overrides(folder)
        except unreadable_errors as err:
            unreadable.append(f"{folder} ({type(err).__name__}: {str(err).splitlines()[0]})")
    extra_keys = {k for o in overrides.values() for k in o if k not in NOT_SETTINGS and not k.startswith("hydra")}

    runs = []
    for folder in overrides:
        try:
            runs.append(read_run(folder, extra_keys, overrides[folder]))
        except unreadable_errors as err:
            unreadable.append(f"{folder} ({type(err).__name__}: {str(err).splitlines()[0]})")
    if unreadable:
        warnings.warn(f"skipping {len(unreadable)} job(s) whose config.yaml or metrics.json cannot be read: "
                      f"{'; '.join(unreadable)}", stacklevel=2)
    if not runs:
        raise ReportError(f"{', '.join(map(str, folders))}: no finished runs ({len(candidates)} job folder(s), "
                          "none with a readable config.yaml and metrics.json)")
    return runs


# ---------------------------------------------------------------- which table


def detect_table(runs: list[Run]) -> int | None:
    """The paper's table a sweep reproduces: the experiment it ran, else what varies across its runs."""
    experiments = {r.overrides.get("experiment") for r in runs}
    if len(experiments) == 1 and (m := re.fullmatch(r"table([1-4])", str(experiments.pop()))):
        return int(m.group(1))
    if any(r.metrics.get("baselines") for r in runs):
        return 4
    varying = varying_settings(runs)
    for setting, table in (("noise", 3), ("patch_size", 2), ("lambda", 1)):
        if setting in varying:
            return table
    return None


def varying_settings(runs: list[Run]) -> list[str]:
    keys = list(runs[0].settings)
    return [k for k in keys if len({_hashable(r.settings.get(k)) for r in runs}) > 1]


def _hashable(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


# ---------------------------------------------------------------- rows


def summarize(values: list) -> tuple[float, float, int]:
    """mean, std (ddof=0) and count of the values that are there (None: a metric the run could not compute)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return math.nan, math.nan, 0
    return float(np.mean(present)), float(np.std(present, ddof=0)), len(present)


def group_runs(runs: list[Run]) -> list[list[Run]]:
    """Runs that differ only in seed, grouped, in dataset / fabric / settings order."""
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        key = (r.dataset, r.fabric or "", *(_hashable(v) for v in r.settings.values()))
        groups.setdefault(key, []).append(r)
    for key, members in groups.items():
        by_seed: dict = {}
        for r in sorted(members, key=lambda r: str(r.folder)):
            by_seed.setdefault(r.seed, []).append(r)
        repeats = [r for same in by_seed.values() for r in same[1:]]
        if repeats:  # a seed counted twice would weigh its run double in the mean and shrink the std
            warnings.warn("the same settings and seed appear in more than one run; each seed counted once, "
                          f"left out: {', '.join(str(r.folder) for r in repeats)}", stacklevel=2)
        groups[key] = [same[0] for same in by_seed.values()]
    return [groups[k] for k in sorted(groups, key=lambda key: tuple(_sort_key(v) for v in key))]


def _sort_key(value):
    if isinstance(value, bool) or value is None:
        return (0, str(value))
    if isinstance(value, (int, float)):
        return (1, float(value))
    return (2, str(value))


def _paper(table: int | None, run: Run, method: str) -> paper_results.PaperResult | None:
    tables = [table] if table else sorted(paper_results.TABLES)
    for t in tables:
        found = paper_results.lookup(t, run.dataset, run.fabric, method, run.settings)
        if found:
            return found
    return None


def build_report(folders: list[str | Path], table: int | None = None) -> Report:
    """Read the runs, pick the table, and lay the rows out as Markdown and CSV records."""
    runs = load_runs(folders)
    table = table or detect_table(runs)
    varying = varying_settings(runs)
    shown = [*TABLE_SETTINGS.get(table, ()), *(k for k in varying if k not in TABLE_SETTINGS.get(table, ()))]
    has_fabric = any(r.fabric is not None for r in runs)
    groups = group_runs(runs)
    by_method = table == 4 or any(r.metrics.get("baselines") for r in runs)

    columns = ["dataset", "fabric", *runs[0].settings, "n_seeds", "seeds"]
    rows = []
    for members in groups:
        first = members[0]
        row = {"dataset": first.dataset, "fabric": first.fabric or "", **first.settings,
               "n_seeds": len(members), "seeds": " ".join(str(s) for s in sorted(r.seed for r in members))}
        if by_method:
            _method_columns(row, members, table)
        else:
            _metric_columns(row, members, table)
        rows.append(row)
    for row in rows:
        columns += [c for c in row if c not in columns]

    keys = ["dataset"] + (["fabric"] if has_fabric else []) + shown  # what a row is, before its numbers
    head = keys + ["n"]
    extra = []
    if by_method:
        methods = _method_order(runs)
        head += [h for m in methods for h in (METHOD_LABELS.get(m, m), "paper")]
        body = [[_cell(row.get(k)) for k in keys] + [str(row["n_seeds"])]
                + [c for m in methods for c in (_ours(row, f"{m}_auc"), _theirs(row, f"paper_{m}_auc"))]
                for row in rows]
        # The paper's Table 4 has only AUCs; F1 and accuracy at each method's own threshold follow.
        for metric in ("f1", "accuracy"):
            extra += [f"{METRIC_LABELS[metric]} at each method's threshold:", "",
                      _markdown_table([SETTING_LABELS.get(k, k) for k in keys] + ["n"]
                                      + [METHOD_LABELS.get(m, m) for m in methods],
                                      [[_cell(row.get(k)) for k in keys] + [str(row["n_seeds"])]
                                       + [_ours(row, f"{m}_{metric}") for m in methods]
                                       for row in rows]), ""]
    else:
        validation = any(row.get("validation_auc_n") for row in rows)
        scores = any(r.metrics.get("score", "norm") != "norm" for r in runs)  # a column once any run used another score
        images = [m for m in IMAGE_METRICS if any(row.get(f"{m}_n") for row in rows)]
        head += ([METRIC_LABELS[m] for m in METRICS] + ["validation AUC (synthetic)"] * validation + ["score"] * scores
                 + [IMAGE_METRIC_LABELS[m] for m in images]
                 + [f"paper {METRIC_LABELS[m]}" for m in METRICS] + ["paper table"])
        body = [[_cell(row.get(k)) for k in keys] + [str(row["n_seeds"])]
                + [_ours(row, m) for m in METRICS] + [_ours(row, "validation_auc")] * validation
                + [row.get("scores", "")] * scores + [_ours(row, m) for m in images]
                + [_theirs(row, f"paper_{m}") for m in METRICS] + [_cell(row.get("paper_table"))]
                for row in rows]
        if validation:
            extra += ["Validation AUC: the run's calibration patches with fresh synthetic defects against the same "
                      "patches clean (no real defect involved; metrics.json → validation_auc).", ""]
        if scores:
            extra += ["Score: the anomaly score the runs used and how many runs used it "
                      "(model.score=auto: the one chosen by validation AUC; metrics.json → score).", ""]
        if images:
            extra += ["Image AUROC, pixel AUROC and AUPRO (to 30 % false-positive rate): whole images, from "
                      f"rdcae.detect's evaluation of each run (<run>/{DETECT}/evaluation.json), over the runs that "
                      "have one; AUC, F1 and accuracy are the paper's, on patches.", ""]
    head = [SETTING_LABELS.get(h, h) for h in head]

    per_image = _per_image_section(groups, rows, keys)
    title = (f"Table {table} of {SOURCE}: {TITLES[table]}" if table
             else f"Runs against {SOURCE} (each row: the first table with the same settings)")
    markdown = "\n".join([
        f"# {title}",
        "",
        f"{len(runs)} run{'s' * (len(runs) != 1)} from {', '.join(str(f) for f in folders)}. "
        "Ours: mean ± std over seeds (population std, ddof=0; one seed: its value); "
        "paper: the paper's mean ± std, where it has a row with the same dataset and settings.",
        "",
        _markdown_table(head, body),
        "",
        *extra,
        *([] if any(row.get("paper_table") for row in rows) else [
            "No row has the paper's numbers beside it: the paper ran none of these datasets and settings (it ran "
            "AITEX and KolektorSDD2 with Julia defects alone; rdcae's default recipe adds thin lines, "
            "noise=julia_lines; `recipe=paper` runs the paper's own, `experiment=table1` to `table4` its grids).",
            ""]),
        *per_image,
    ])
    return Report(table=table, columns=columns, rows=rows, markdown=markdown)


def _per_image_section(groups: list[list[Run]], rows: list[dict], keys: list[str]) -> list[str]:
    """Markdown: for each row, every defect image's tiles, test AUC of its tiles against the
    held-out normals and tiles above the patch threshold, mean ± std over seeds (metrics.json
    `per_defect_image`; rows of runs without it are left out)."""
    lines = []
    for members, row in zip(groups, rows):
        per_run = [r.metrics.get("per_defect_image") for r in members]
        if not all(per_run):
            continue
        what = ", ".join(f"{SETTING_LABELS.get(k, k)} {_cell(row.get(k))}" for k in keys)
        images = list(dict.fromkeys(entry["image"] for entries in per_run for entry in entries))
        body = []
        for image in images:
            found = [next((e for e in entries if e["image"] == image), None) for entries in per_run]
            tiles = next(e["tiles"] for e in found if e)
            auc = summarize([e["auc"] if e else None for e in found])
            detected = summarize([e["detected"] if e else None for e in found])
            body.append([image, str(tiles), _mean_std(*auc) if auc[2] else "—",
                         _mean_std(*detected, digits=1)])
        lines += [f"## Per defect image: {what} ({len(members)} seed{'s' * (len(members) != 1)})", "",
                  _markdown_table(["defect image", "tiles", "AUC against the held-out normals",
                                   "tiles above the patch threshold"], body), ""]
    return lines


def _metric_columns(row: dict, members: list[Run], table: int | None) -> None:
    for m in METRICS:
        row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_n"] = summarize([(r.metrics.get("test") or {}).get(m)
                                                                      for r in members])
    # The label-free number: held-out synthetic defects against clean calibration patches.
    row["validation_auc_mean"], row["validation_auc_std"], row["validation_auc_n"] = summarize(
        [r.metrics.get("validation_auc") for r in members])
    if any(r.evaluation for r in members):
        for m in IMAGE_METRICS:
            row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_n"] = summarize([r.evaluation.get(m) for r in members])
    used = Counter(r.metrics.get("score", "norm") for r in members)
    row["scores"] = ", ".join(f"{kind} ×{n}" for kind, n in sorted(used.items()))
    paper = _paper(table, members[0], members[0].settings["model"])
    row["paper_table"] = paper.table if paper else ""
    for m in METRICS:
        mean, std = paper.metrics.get(m, ("", "")) if paper else ("", "")
        row[f"paper_{m}_mean"], row[f"paper_{m}_std"] = mean, std


def _method_columns(row: dict, members: list[Run], table: int | None) -> None:
    methods = _method_order(members)
    for method in methods:
        for m in METRICS:
            values = [(r.methods().get(method) or {}).get(m) for r in members]
            row[f"{method}_{m}_mean"], row[f"{method}_{m}_std"], row[f"{method}_{m}_n"] = summarize(values)
    row["paper_table"] = ""
    for method in methods:
        paper = _paper(table or 4, members[0], method)
        mean, std = paper.metrics["auc"] if paper else ("", "")
        row[f"paper_{method}_auc_mean"], row[f"paper_{method}_auc_std"] = mean, std
        if paper:
            row["paper_table"] = paper.table


def _method_order(runs: list[Run]) -> list[str]:
    present = {m for r in runs for m in r.methods()}
    return [m for m in METHOD_LABELS if m in present] + sorted(present - set(METHOD_LABELS))


def _cell(value) -> str:
    if value is None:
        return ""
    return str(value)


def _ours(row: dict, prefix: str) -> str:
    mean, std, n = row.get(f"{prefix}_mean"), row.get(f"{prefix}_std"), row.get(f"{prefix}_n")
    if mean is None or n == 0:
        return "—"
    text = _mean_std(mean, std, n)
    return text if n == row["n_seeds"] else f"{text} (n={n})"


def _mean_std(mean: float, std: float, n: int, digits: int = 3) -> str:
    """mean ± std, or the value alone where one seed gave it: a spread of one run is no spread."""
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _theirs(row: dict, prefix: str) -> str:
    mean, std = row.get(f"{prefix}_mean", ""), row.get(f"{prefix}_std", "")
    return "—" if mean == "" else f"{mean:.3f} ± {std:.3f}"


def _markdown_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def write_report(report: Report, out_dir: str | Path) -> tuple[Path, Path]:
    """report.md and report.csv in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv_path = out_dir / "report.md", out_dir / "report.csv"
    md.write_text(report.markdown)
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=report.columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in report.rows:
            writer.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                             for k, v in row.items()})
    return md, csv_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rdcae.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+",
                        help="Hydra multirun folders (outputs/multirun/<time>) or single run folders")
    parser.add_argument("--table", type=int, choices=sorted(paper_results.TABLES),
                        help="the paper's table to compare with (default: from what the sweep varies)")
    parser.add_argument("--out", help="where report.md and report.csv go (default: the first folder)")
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = build_report(args.folders, table=args.table)
        except ReportError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        finally:
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
    try:
        md, csv_path = write_report(report, args.out or args.folders[0])
    except OSError as err:
        print(f"error: --out {args.out or args.folders[0]}: cannot write the report there ({err.strerror or err})",
              file=sys.stderr)
        return 2
    print(report.markdown)
    print(f"written: {md}, {csv_path}")
    return 0
