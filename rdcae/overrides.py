"""The command line's settings checked against the training config before any work (`check_overrides`):
a misspelt key or config group option is one line naming it, with the closest setting. Light to import
(Hydra and OmegaConf alone), so that rdcae.detect can use it without Lightning."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rdcae.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
_ABSENT = object()
SET_BY_RDCAE = {  # Trainer arguments the run sets itself, and what to set instead
    "trainer.max_epochs": "the epochs are alternation.block_epochs × alternation.max_blocks; set those",
    "trainer.callbacks": "the run sets the callbacks itself (the alternation and the checkpoints)",
    "trainer.logger": "the run logs to TensorBoard in its folder itself",
    "trainer.default_root_dir": "the run's folder is Hydra's: set hydra.run.dir (or hydra.sweep.dir with -m)",
    "trainer.plugins": "the run sets its checkpoint plugin itself",
    "output_dir": ("the folder a run writes to is Hydra's: set hydra.run.dir=<folder> "
                   "(hydra.sweep.dir=<folder> with -m)"),
}


def run_name(dataset: DictConfig) -> str:
    """What a run's folder is named after (conf/train.yaml, hydra.run.dir): the dataset, with AITEX's fabric
    or the folder of dataset=folder, so that runs on two fabrics or two folders tell apart at a glance."""
    name = str(dataset.get("name"))
    if name == "aitex" and dataset.get("fabric") is not None:
        fabric = str(dataset.fabric)
        return f"aitex{fabric.zfill(2) if fabric.isdigit() else fabric}"
    if name == "folder" and dataset.get("data_dir"):
        return "folder-" + re.sub(r"[^\w.-]+", "_", Path(str(dataset.data_dir)).expanduser().resolve().name)
    return name


OmegaConf.register_new_resolver("run_name", run_name, replace=True)


def check_overrides(overrides: list[str], command: str = "python -m rdcae.train", multirun: bool = True,
                    config_name: str = "train") -> None:
    """Refuses, in one line that names it, a command-line setting the training config does not have: a
    misspelt key (model.scor=), a `+key=` that adds one nothing reads, a config group option that does
    not exist (dataset=aitx), a sweep without -m (`multirun=False`), or a line Hydra cannot read. Values are
    `validate`'s to check; hydra.* and hydra/* settings are Hydra's own. Sweeps (seed=0,1,2) are checked
    value by value for groups. `config_name` is the command's config in conf/ (bench adds its own settings to
    the training config's)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        detail = str(error).strip().splitlines()[0]
        raise ConfigError(f"{' '.join(overrides)}: a setting that cannot be read ({detail}); write key=value, "
                          f"e.g. seed=1 or 'seed=0,1,2' with -m") from None
    if not multirun and (sweep := next((o for o in parsed if o.is_sweep_override()), None)):
        raise ConfigError(f"{sweep.input_line}: a sweep, one job per value; add -m (python -m rdcae.train -m "
                          f"{sweep.input_line}), or give one value")
    groups = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in CONF.iterdir() if p.is_dir()}
    ours = [o for o in parsed if o.key_or_group.split(".")[0].split("/")[0] != "hydra" and not o.is_delete()]
    chosen = []  # each group override with its first option: the config the other settings are looked up in
    for override in (o for o in ours if o.key_or_group in groups):
        key, value = override.key_or_group, override.value()
        options = ([] if isinstance(value, Glob) else list(override.sweep_string_iterator())
                   if override.is_sweep_override() else [str(value)])
        for option in options:
            if option not in groups[key] and option != "null":
                raise ConfigError(f"{key}={option}: no such {key}; {_closest(option, groups[key], key + '=', '? ')}"
                                  f"choose one of {', '.join(groups[key])}")
        if options:
            chosen.append(f"{'+' if override.is_add() else ''}{key}={options[0]}")
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=chosen)
    except HydraException as error:
        raise ConfigError(f"{' '.join(chosen)}: {str(error).strip().splitlines()[0]}") from None
    _check_dataset_settings(ours, cfg, chosen, swept_dataset=any(o.key_or_group == "dataset" and o.is_sweep_override()
                                                                 for o in ours))
    for override in (o for o in ours if o.key_or_group not in groups):
        key = override.key_or_group
        if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT:
            continue
        if key in SET_BY_RDCAE:
            raise ConfigError(f"{override.input_line}: {SET_BY_RDCAE[key]}")
        parent, _, leaf = key.rpartition(".")
        if parent == "trainer" and leaf in trainer_arguments():  # another argument of Lightning's Trainer
            if override.is_add():
                continue  # passed on as it is
            raise ConfigError(f"{override.input_line}: an argument of Lightning's Trainer that conf/trainer does not "
                              f"list; add it with a plus, +{override.input_line}")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{override.input_line}: unknown setting; {parent} has no settings inside it")
        set_here = [k.rpartition(".")[2] for k in SET_BY_RDCAE if k.rpartition(".")[0] == parent]
        if reserved := difflib.get_close_matches(leaf, set_here, n=1, cutoff=0.8):  # trainer.max_epoch
            close = f"{parent}.{reserved[0]}" if parent else reserved[0]
            raise ConfigError(f"{override.input_line}: unknown setting; did you mean {close}? {SET_BY_RDCAE[close]}")
        known = sorted({str(k) for k in node} | (set() if parent else set(groups)))
        hint = _closest(leaf, known, parent + "." if parent else "", "=? ") or _elsewhere(key, cfg)
        if parent == "trainer" and not hint:  # Lightning's arguments, given with a plus as the config lists none
            hint = _closest(leaf, trainer_arguments(), "+trainer.", "=? ")
        where = f"{parent} has" if parent else f"{command} takes"
        shown = ", ".join(known) if len(known) <= 12 else ", ".join(known[:12]) + ", ..."
        raise ConfigError(f"{override.input_line}: unknown setting; {hint}{where} {shown}"
                          + ((" (see --help)" if command.startswith(("python -m rdcae.train", "python -m rdcae.bench"))
                              else " (python -m rdcae.train --help lists them)") if not parent else ""))


def check_command_line(argv: list[str], command: str, config_name: str = "train") -> None:
    """A Hydra app's command line (`argv`, as sys.argv[1:]) checked by check_overrides before Hydra runs it: a
    refused setting is one line on stderr and exit code 2. Left to Hydra: --help, a config of the user's own,
    and HYDRA_FULL_ERROR=1 (Hydra's own messages, with their tracebacks)."""
    import os
    import sys

    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    own_config = args.config_path or args.config_name or args.config_dir
    if args.help or args.hydra_help or own_config or os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    try:
        check_overrides(args.overrides, command, multirun=bool(args.multirun), config_name=config_name)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def _check_dataset_settings(overrides, cfg: DictConfig, chosen: list[str], swept_dataset: bool) -> None:
    """Refuses `fabric=` or `data_dir=` where the run's dataset would ignore it: without `dataset=aitex` the
    embedded fabric would train and the images named would never be read. A `fabric=` that pins the fabric
    sweep of an experiment (`experiment=table1 dataset=ksdd2 fabric=00`: one job per seed) is left alone."""
    if swept_dataset:
        return
    name = cfg.dataset.name
    chose = any(o.key_or_group == "dataset" for o in overrides)
    where = f"dataset={name}" if chose else f"dataset={name} (the embedded fabric, the default)"
    for override in overrides:
        key = override.key_or_group
        if key == "fabric" and name != "aitex" and not _sweeps_fabric(chosen):
            raise ConfigError(f"{override.input_line}: an AITEX fabric, but {where} has no fabrics; "
                              + (f"drop {key}= or use dataset=aitex" if chose else "add dataset=aitex"))
        if key in ("data_dir", "dataset.data_dir") and name == "woven":
            raise ConfigError(f"{override.input_line}: {where} reads no files; "
                              + ("drop data_dir= or use" if chose else "add") +
                              " dataset=aitex, dataset=ksdd2 or dataset=folder (your own images)")


def _sweeps_fabric(chosen: list[str]) -> bool:
    """Whether the config groups chosen set up a sweep over fabrics (the paper's experiments)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=chosen, return_hydra_config=True)
    return OmegaConf.select(cfg, "hydra.sweeper.params.fabric", default=None) is not None


def _elsewhere(key: str, cfg: DictConfig) -> str:
    """'did you mean <path>=? ' for a setting of that name deeper in the config (holdout_images= for
    dataset.holdout_images=), or ''."""
    def paths(node: dict, prefix: str = ""):
        for name, child in node.items():
            yield f"{prefix}{name}"
            if isinstance(child, dict):
                yield from paths(child, f"{prefix}{name}.")

    leaf = key.rpartition(".")[2]
    tree = OmegaConf.to_container(cfg, resolve=False)  # names alone: no interpolation is resolved
    found = sorted((p for p in paths(tree) if p.rpartition(".")[2] == leaf and p != key), key=len)
    return f"did you mean {found[0]}=? " if found else ""


def trainer_arguments() -> list[str]:
    """The arguments of Lightning's Trainer a run passes on (trainer.<argument>=...), but those it sets itself."""
    import inspect

    from lightning import Trainer

    return [name for name in inspect.signature(Trainer).parameters if f"trainer.{name}" not in SET_BY_RDCAE]


def _closest(word: str, known: list[str], before: str, after: str) -> str:
    """'did you mean <before><closest><after>' for the known word closest to `word`, or ''."""
    close = difflib.get_close_matches(word, known, n=1)
    return f"did you mean {before}{close[0]}{after}" if close else ""
