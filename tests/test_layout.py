"""The package's shape: no import cycle among rdcae modules, and inference without the training stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rdcae"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """Every rdcae module `path` imports, at the top or inside a function, with the package
    __init__ files that importing it runs (those of packages `path` is not part of)."""
    me = module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if is_module(f"{node.module}.{alias.name}") else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            if not name.startswith("rdcae"):
                continue
            found.add(name)
            parts = name.split(".")
            for depth in range(1, len(parts)):
                parent = ".".join(parts[:depth])
                if not (me == parent or me.startswith(parent + ".")):
                    found.add(parent)
    found.discard(me)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_rdcae_module_imports_itself_back_through_others():
    graph = import_graph()
    assert "rdcae.model.robust" in graph["rdcae.model.alternation"]  # the graph sees real imports
    assert find_cycle(graph) is None


def loaded_packages(module: str, packages: tuple[str, ...]) -> list[str]:
    code = f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(packages)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return ast.literal_eval(out.stdout)


def test_inference_loads_without_lightning_or_hydra():
    assert loaded_packages("rdcae.inference", ("lightning", "pytorch_lightning", "hydra", "torch")) == ["torch"]


def test_detection_loads_without_the_training_stack_or_the_metrics():
    # torchmetrics alone (with scipy.signal and matplotlib) took longer to import than an image to judge
    training = ("lightning", "pytorch_lightning", "torchmetrics", "matplotlib", "tensorboard")
    assert loaded_packages("rdcae.detect", training + ("torch",)) == ["torch"]



def test_the_training_command_reads_its_settings_before_the_training_stack_loads():
    # --help and a misspelt setting answer before Lightning and torch load; a run loads them (rdcae.fit)
    stack = ("lightning", "torch", "torchmetrics", "matplotlib")
    assert loaded_packages("rdcae.train", stack) == []
    code = "import sys, rdcae.train; rdcae.train.run; print('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True).stdout.strip() == "True"
