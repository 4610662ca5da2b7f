"""The paper's Tables 1–4 as printed, and the lookup that puts them beside our runs.

Source: M. N. Alpdemir, "Pseudo-Supervised Defect Detection Using Robust Deep Convolutional
Autoencoders" (TÜBİTAK BİLGEM; received 29 October 2022, published online 31 December 2022),
Tables 1, 2, 3 and 4. Every cell is copied from the paper, its labels and typos included
("KSSD2", "RCAE AUC", "RDCAE RAUC"); where the paper leaves a dataset cell blank under the row
above, the row here names it. tests/test_report.py compares every cell with the paper's text.
Values are mean ± std over the paper's replicated runs (it does not say how many, nor which std).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SOURCE = 'Alpdemir 2022, "Pseudo-Supervised Defect Detection Using Robust Deep Convolutional Autoencoders"'

TITLES = {
    1: "AUC, F1 Score and Accuracy results for different lambda values.",
    2: "AUC, F1 Score and Accuracy results for different image patch sizes.",
    3: "Comparison of the Results When Using synthetic Defects (Structured Noise) vs. Random (Gaussian) Noise.",
    4: "Comparison of Area Under ROC Curve (AUC) Metric Results of Robust Deep Convolutional Autoencoder (RDCAE) "
       "to That of Other Methods",
}

TABLES = {
    1: """\
Dataset   | λ    | Noise Ratio | Noise Type | RDCAE AUC     | F1 Score      | Accuracy
fabric_00 | 1.0  | 3           | struct.    | 0.993 ± 0.005 | 0.208 ± 0.006 | 0.135 ± 0.032
fabric_00 | 1.55 | 3           | struct.    | 1.000 ± 0.000 | 0.994 ± 0.009 | 0.999 ± 0.002
fabric_00 | 1.6  | 3           | struct.    | 1.000 ± 0.000 | 0.998 ± 0.004 | 1.000 ± 0.001
fabric_00 | 1.65 | 3           | struct.    | 1.000 ± 0.000 | 0.991 ± 0.008 | 0.998 ± 0.002
fabric_00 | 2.5  | 3           | struct.    | 0.992 ± 0.011 | 0.936 ± 0.069 | 0.987 ± 0.013
fabric_01 | 1.0  | 3           | struct.    | 0.999 ± 0.001 | 0.715 ± 0.028 | 0.576 ± 0.054
fabric_01 | 1.55 | 3           | struct.    | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_01 | 1.6  | 3           | struct.    | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_01 | 1.65 | 3           | struct.    | 1.000 ± 0.000 | 1.000 ± 0.001 | 1.000 ± 0.001
fabric_01 | 2.5  | 3           | struct.    | 1.000 ± 0.000 | 0.990 ± 0.006 | 0.990 ± 0.006
fabric_02 | 1.0  | 3           | struct.    | 1.000 ± 0.000 | 0.918 ± 0.112 | 0.940 ± 0.090
fabric_02 | 1.55 | 3           | struct.    | 1.000 ± 0.000 | 0.999 ± 0.002 | 1.000 ± 0.001
fabric_02 | 1.6  | 3           | struct.    | 1.000 ± 0.000 | 0.999 ± 0.002 | 1.000 ± 0.001
fabric_02 | 1.65 | 3           | struct.    | 1.000 ± 0.000 | 0.999 ± 0.002 | 0.999 ± 0.001
fabric_02 | 2.5  | 3           | struct.    | 1.000 ± 0.000 | 0.995 ± 0.004 | 0.997 ± 0.002
fabric_03 | 1.0  | 3           | struct.    | 1.000 ± 0.000 | 0.865 ± 0.011 | 0.795 ± 0.019
fabric_03 | 1.55 | 3           | struct.    | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_03 | 1.6  | 3           | struct.    | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_03 | 1.65 | 3           | struct.    | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_03 | 2.5  | 3           | struct.    | 1.000 ± 0.001 | 0.987 ± 0.011 | 0.983 ± 0.014
fabric_04 | 1.0  | 3           | struct.    | 0.995 ± 0.004 | 0.186 ± 0.022 | 0.230 ± 0.106
fabric_04 | 1.55 | 3           | struct.    | 1.000 ± 0.000 | 0.994 ± 0.007 | 0.999 ± 0.001
fabric_04 | 1.6  | 3           | struct.    | 1.000 ± 0.000 | 0.997 ± 0.006 | 0.999 ± 0.001
fabric_04 | 1.65 | 3           | struct.    | 1.000 ± 0.000 | 0.992 ± 0.017 | 0.998 ± 0.003
fabric_04 | 2.5  | 3           | struct.    | 0.998 ± 0.002 | 0.934 ± 0.109 | 0.991 ± 0.015
fabric_06 | 1.0  | 3           | struct.    | 0.929 ± 0.041 | 0.260 ± 0.167 | 0.950 ± 0.035
fabric_06 | 1.55 | 3           | struct.    | 0.951 ± 0.040 | 0.323 ± 0.249 | 0.977 ± 0.007
fabric_06 | 1.6  | 3           | struct.    | 0.951 ± 0.040 | 0.287 ± 0.191 | 0.976 ± 0.005
fabric_06 | 1.65 | 3           | struct.    | 0.951 ± 0.040 | 0.287 ± 0.191 | 0.976 ± 0.005
fabric_06 | 2.5  | 3           | struct.    | 0.953 ± 0.041 | 0.210 ± 0.128 | 0.974 ± 0.003
KSDD2     | 1.0  | 3           | struct.    | 0.863 ± 0.047 | 0.903 ± 0.003 | 0.824 ± 0.004
KSDD2     | 1.55 | 3           | struct.    | 0.939 ± 0.041 | 0.903 ± 0.056 | 0.856 ± 0.078
KSDD2     | 1.6  | 3           | struct.    | 0.976 ± 0.012 | 0.960 ± 0.015 | 0.936 ± 0.024
KSDD2     | 1.65 | 3           | struct.    | 0.938 ± 0.038 | 0.903 ± 0.053 | 0.855 ± 0.074
KSDD2     | 2.5  | 3           | struct.    | 0.838 ± 0.033 | 0.759 ± 0.032 | 0.674 ± 0.034
""",
    2: """\
Dataset   | λ   | patch size | RCAE AUC      | F1 Score      | Accuracy
fabric_00 | 1.6 | 32 × 32    | 1.000 ± 0.000 | 0.918 ± 0.050 | 0.979 ± 0.014
fabric_00 | 6.7 | 64 × 64    | 0.132 ± 0.012 | 0.169 ± 0.000 | 0.092 ± 0.000
fabric_01 | 1.6 | 32 × 32    | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_01 | 6.7 | 64 × 64    | 0.955 ± 0.012 | 0.931 ± 0.016 | 0.934 ± 0.015
fabric_02 | 1.6 | 32 × 32    | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_02 | 6.7 | 64 × 64    | 0.999 ± 0.001 | 0.933 ± 0.008 | 0.950 ± 0.007
fabric_03 | 1.6 | 32 × 32    | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_03 | 6.7 | 64 × 64    | 0.491 ± 0.012 | 0.800 ± 0.000 | 0.667 ± 0.000
fabric_04 | 1.6 | 32 × 32    | 1.000 ± 0.000 | 0.993 ± 0.007 | 0.999 ± 0.001
fabric_04 | 6.7 | 64 × 64    | 0.929 ± 0.000 | 0.854 ± 0.004 | 0.965 ± 0.000
fabric_06 | 1.6 | 32 × 32    | 0.993 ± 0.003 | 0.955 ± 0.045 | 0.997 ± 0.003
fabric_06 | 6.7 | 64 × 64    | 0.510 ± 0.006 | 0.192 ± 0.058 | 0.921 ± 0.003
KSSD2     | 1.6 | 32 × 32    | 0.976 ± 0.012 | 0.960 ± 0.015 | 0.936 ± 0.024
KSSD2     | 3.3 | 64 × 64    | 0.814 ± 0.023 | 0.919 ± 0.008 | 0.855 ± 0.014
""",
    3: """\
Dataset   | Noise Type | Noise Ratio | RDCAE RAUC    | F1 score      | Accuracy
fabric_00 | struct.    | 5           | 0.991 ± 0.009 | 0.701 ± 0.278 | 0.846 ± 0.149
fabric_00 | random     | 5           | 0.618 ± 0.137 | 0.228 ± 0.024 | 0.228 ± 0.114
fabric_01 | struct.    | 5           | 1.000 ± 0.000 | 0.996 ± 0.004 | 0.995 ± 0.005
fabric_01 | random     | 5           | 0.999 ± 0.000 | 0.963 ± 0.025 | 0.959 ± 0.028
fabric_02 | struct.    | 5           | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_02 | random     | 5           | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000
fabric_03 | struct.    | 5           | 1.000 ± 0.000 | 0.998 ± 0.002 | 0.997 ± 0.003
fabric_03 | random     | 5           | 0.996 ± 0.002 | 0.883 ± 0.034 | 0.863 ± 0.036
fabric_04 | struct.    | 5           | 1.000 ± 0.000 | 0.763 ± 0.223 | 0.925 ± 0.072
fabric_04 | random     | 5           | 0.976 ± 0.004 | 0.333 ± 0.004 | 0.659 ± 0.001
fabric_06 | struct.    | 5           | 0.999 ± 0.000 | 0.840 ± 0.017 | 0.992 ± 0.000
fabric_06 | random     | 5           | 0.983 ± 0.005 | 0.414 ± 0.014 | 0.977 ± 0.001
KSDD2     | struct.    | 5           | 0.953 ± 0.032 | 0.924 ± 0.047 | 0.885 ± 0.067
KSDD2     | random     | 5           | 0.943 ± 0.006 | 0.813 ± 0.008 | 0.739 ± 0.010
""",
    4: """\
Dataset   | Robust DCAE   | DCAE          | Deep SVDD     | OC-SVM-LREP   | OC-SVM-AERE   | ISOF-LREP     | ISOF-AERE
fabric_00 | 1.000 ± 0.000 | 0.973 ± 0.026 | 0.944 ± 0.030 | 0.676 ± 0.134 | 0.828 ± 0.028 | 0.669 ± 0.148 | 0.825 ± 0.042
fabric_01 | 1.000 ± 0.000 | 0.994 ± 0.002 | 0.842 ± 0.111 | 0.762 ± 0.015 | 0.911 ± 0.011 | 0.781 ± 0.027 | 0.902 ± 0.017
fabric_02 | 1.000 ± 0.000 | 1.000 ± 0.000 | 0.982 ± 0.012 | 0.665 ± 0.028 | 0.857 ± 0.009 | 0.664 ± 0.021 | 0.886 ± 0.008
fabric_03 | 1.000 ± 0.000 | 1.000 ± 0.001 | 0.818 ± 0.092 | 0.476 ± 0.057 | 0.875 ± 0.007 | 0.505 ± 0.031 | 0.873 ± 0.011
fabric_04 | 1.000 ± 0.000 | 0.978 ± 0.006 | 0.774 ± 0.109 | 0.488 ± 0.065 | 0.865 ± 0.019 | 0.485 ± 0.024 | 0.857 ± 0.019
fabric_06 | 0.993 ± 0.003 | 0.955 ± 0.019 | 0.739 ± 0.127 | 0.384 ± 0.008 | 0.737 ± 0.063 | 0.468 ± 0.003 | 0.777 ± 0.074
KSSD2     | 0.972 ± 0.012 | 0.787 ± 0.013 | 0.807 ± 0.002 | 0.704 ± 0.010 | 0.712 ± 0.003 | 0.661 ± 0.017 | 0.722 ± 0.003
""",
}

# What each column of a table is in our terms (the first column is always the dataset label).
COLUMNS = {
    1: ("lambda", "noise_ratio", "noise", "auc", "f1", "accuracy"),
    2: ("lambda", "patch_size", "auc", "f1", "accuracy"),
    3: ("noise", "noise_ratio", "auc", "f1", "accuracy"),
    4: ("rdcae", "dcae", "deep_svdd", "ocsvm_lrep", "ocsvm_aere", "iforest_lrep", "iforest_aere"),  # AUC of each method
}

# Settings a table does not print but the text fixes, so that a run with other settings is not
# compared with it: 32×32 patches ("32×32 pixel in our case", section 4.2) unless Table 2 says
# otherwise, structured (Julia) defects except in Table 3's random rows, and "in subsequent runs
# we set λ = 1.6" after Table 1 (section 5.1). The noise ratio of Tables 2 and 4 is not given.
IMPLIED = {
    1: {"patch_size": 32},
    2: {"noise": "julia"},
    3: {"lambda": 1.6, "patch_size": 32},
    4: {"lambda": 1.6, "patch_size": 32, "noise": "julia"},
}

# The methods of Table 4 in the paper's order and with its labels; deep_svdd_soft (Deep SVDD's
# soft-boundary objective) is ours: the paper reports one Deep SVDD, taken as the one-class objective.
METHOD_LABELS = {
    "rdcae": "Robust DCAE",
    "dcae": "DCAE",
    "deep_svdd": "Deep SVDD",
    "deep_svdd_soft": "Deep SVDD (soft-boundary)",
    "ocsvm_lrep": "OC-SVM-LREP",
    "ocsvm_aere": "OC-SVM-AERE",
    "iforest_lrep": "ISOF-LREP",
    "iforest_aere": "ISOF-AERE",
    "knn_pixel": "NN pixel distance",
}

_NOISE = {"struct.": "julia", "random": "gaussian"}  # Table 3: "Random (Gaussian) Noise"


@dataclass
class PaperResult:
    """One method on one dataset row of one table: mean and std per metric."""

    table: int
    label: str                 # the paper's row label: fabric_00, KSDD2, KSSD2
    dataset: str               # ours: aitex or ksdd2
    fabric: str | None
    method: str
    settings: dict = field(default_factory=dict)   # what the table prints or its text implies
    metrics: dict = field(default_factory=dict)    # metric -> (mean, std)


def parse_cells(text: str) -> list[list[str]]:
    """Rows of cells of a table as written above, header first."""
    return [[cell.strip() for cell in line.split("|")] for line in text.splitlines() if line.strip()]


def _dataset(label: str) -> tuple[str, str | None]:
    if label.startswith("fabric_"):
        return "aitex", label.removeprefix("fabric_")
    if label in ("KSDD2", "KSSD2"):  # the paper spells it both ways
        return "ksdd2", None
    raise ValueError(f"unknown dataset label {label!r} in paper_results.TABLES")


def _value(column: str, cell: str):
    if column == "noise":
        return _NOISE[cell]
    if column == "patch_size":
        return int(cell.split("×")[0])
    if column == "noise_ratio":
        return int(cell)
    if column == "lambda":
        return float(cell)
    mean, std = cell.split("±")
    return float(mean), float(std)


def _load() -> dict[int, list[PaperResult]]:
    results: dict[int, list[PaperResult]] = {}
    for table, text in TABLES.items():
        results[table] = []
        for cells in parse_cells(text)[1:]:
            dataset, fabric = _dataset(cells[0])
            values = {col: _value(col, cell) for col, cell in zip(COLUMNS[table], cells[1:], strict=True)}
            settings = {**IMPLIED[table],
                        **{k: v for k, v in values.items() if k in ("lambda", "patch_size", "noise", "noise_ratio")}}
            if table == 4:
                for method in COLUMNS[4]:
                    results[4].append(PaperResult(4, cells[0], dataset, fabric, method, settings,
                                                  {"auc": values[method]}))
            else:
                metrics = {k: values[k] for k in ("auc", "f1", "accuracy")}
                results[table].append(PaperResult(table, cells[0], dataset, fabric, "rdcae", settings, metrics))
    return results


RESULTS = _load()


def _same(ours, theirs) -> bool:
    if isinstance(theirs, float):
        return isinstance(ours, (int, float)) and math.isclose(float(ours), theirs)
    return ours == theirs


def lookup(table: int, dataset: str, fabric: str | None, method: str, settings: dict) -> PaperResult | None:
    """The paper's result for these settings in this table, or None when the paper has no such row.

    A paper row matches when dataset, fabric and method are equal and every setting the table
    states (or its text implies) equals ours; settings the paper leaves open are not compared.
    """
    fabric = fabric if dataset == "aitex" else None
    for r in RESULTS.get(table, []):
        if ((r.dataset, r.fabric, r.method) == (dataset, fabric, method)
                and all(_same(settings.get(k), v) for k, v in r.settings.items())):
            return r
    return None
