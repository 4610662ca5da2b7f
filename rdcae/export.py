"""Export a detector: `python -m rdcae.export model=<run>/model.pt [format=onnx] [output=<path>]`.

Writes the detector file as ONNX (rdcae.inference.onnx: model.onnx beside model.pt unless output=
says where), then checks onnxruntime against PyTorch on the run's test patches, rebuilt from the
config saved in the model file (from data_dir= when the data lives elsewhere on this machine), or
on random patches when the run's data cannot be rebuilt here and data_dir= was not given.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

FORMATS = ("onnx",)
SETTINGS = ("model", "format", "output", "data_dir")
RANDOM_PATCHES = 1024
TOLERANCE = 1e-3  # largest relative score difference the parity check accepts
USAGE = """usage: python -m rdcae.export model=PATH [format=onnx] [output=PATH] [data_dir=PATH]

  model     a run's detector file (model.pt)
  format    onnx (the only one for now)
  output    where to write it (default: beside the model file, model.onnx for model.pt)
  data_dir  where the run's dataset is on this machine, when not where it was trained

Then prints a parity check of onnxruntime against PyTorch: the largest relative score difference and
the share of patches whose decision (score > threshold) agrees, on the run's test patches when its
data can be rebuilt from the config saved in the model file, else on random patches. With data_dir=
the run's test patches are required: when they cannot be rebuilt from there, nothing is written.

example: python -m rdcae.export model=outputs/runs/2026-01-01_12-00-00_woven/model.pt
         python -m rdcae.export model=model.pt data_dir=/path/to/AITEX"""


def parse(argv: list[str]) -> dict:
    """key=value arguments into settings; ValueError naming the argument for anything else."""
    settings: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ValueError(f"{arg!r}: arguments are key=value ({', '.join(SETTINGS)}); see --help")
        if key not in SETTINGS:
            close = difflib.get_close_matches(key, SETTINGS, n=1)
            hint = f"did you mean {close[0]}=? " if close else ""
            raise ValueError(f"{key}={value}: unknown setting; {hint}choose from {', '.join(SETTINGS)}")
        if key in settings:
            raise ValueError(f"{key}= given twice ({settings[key]!r} and {value!r})")
        settings[key] = value
    if not settings.get("model"):
        raise ValueError("model= is required: the run's detector file, e.g. model=outputs/runs/<run>/model.pt")
    settings.setdefault("format", "onnx")
    if settings["format"] not in FORMATS:
        raise ValueError(f"format={settings['format']}: choose one of {', '.join(FORMATS)}")
    return settings


def run_config(detector, data_dir: str | None = None):
    """The run's config from the model file, its dataset read from data_dir when given; the patch cache it names
    is used where it exists, and none is written where it does not."""
    from omegaconf import OmegaConf, open_dict

    config = OmegaConf.create(detector.config)
    with open_dict(config):  # a patch cache where there is one already (training's folder); none written elsewhere
        if config.get("cache_dir") and not Path(str(config.cache_dir)).expanduser().is_dir():
            config.cache_dir = None
    if data_dir:
        with open_dict(config):
            config.data_dir = data_dir
            if OmegaConf.is_dict(config.get("dataset")):
                config.dataset.data_dir = data_dir
    return config


def check_patches(detector, data_dir: str | None = None):
    """uint8 patches (K, C, P, P) to compare the runtimes on, and a phrase saying which they are.
    With data_dir the run's test patches are required: ValueError naming it when they cannot be had."""
    import numpy as np

    from rdcae.data.images import to_channels
    from rdcae.data.patches import prepare_patches
    from rdcae.data.sources import quiet_data

    spec = detector.spec
    try:
        with quiet_data():  # the data's own notes (an empty mask, say) belong to training, not here
            patchset = prepare_patches(run_config(detector, data_dir))
        normal, defect = patchset.test_normal, patchset.test_defect
        if not len(normal) + len(defect):
            raise ValueError("the rebuilt test set is empty")
        x = to_channels(np.concatenate([normal, defect]), spec.channels)
        return x, f"the run's {len(normal)} normal + {len(defect)} defect test patches"
    except Exception as err:  # missing data, a config from another version: the check still runs, on noise
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
        if data_dir:
            raise ValueError(f"data_dir={data_dir}: the run's test patches cannot be rebuilt from there "
                             f"({reason})") from None
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (RANDOM_PATCHES, spec.channels, spec.patch_size, spec.patch_size), dtype=np.uint8)
        return x, (f"{RANDOM_PATCHES} random uint8 patches (the run's data could not be rebuilt: {reason}; "
                   "data_dir= says where it is)")


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help", "help") for arg in argv):
        print(USAGE)
        return 0
    try:
        settings = parse(argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from rdcae.inference import load_detector
    from rdcae.inference.onnx import OPSET, OnnxScorer, export_onnx, parity

    model = Path(settings["model"])
    output = Path(settings["output"]) if settings.get("output") else model.with_suffix(".onnx")
    if output.is_dir() or settings.get("output", "").endswith(("/", "\\")):
        output = output / model.with_suffix(".onnx").name
    try:
        try:  # first: what model= is (an .onnx given there is named as one, not as the output it would be)
            detector = load_detector(model)
        except (KeyError, TypeError, RuntimeError) as err:  # the right format tag, but pieces missing or mismatched
            raise ValueError(f"model={model}: a damaged rdcae detector file ({type(err).__name__}: "
                             f"{(str(err).splitlines() or [''])[0]})") from None
        if output.resolve() == model.resolve():
            raise ValueError(f"output={output} is the model file itself; choose another path")
        patches, which = check_patches(detector, settings.get("data_dir"))
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            export_onnx(detector, output)
        except OSError as err:  # a folder that cannot be made or written (a missing one is made)
            raise ValueError(f"output={output}: cannot write it there ({err.strerror or err}); choose another "
                             "output=") from None
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: output={output}: cannot write it ({err.strerror or err})", file=sys.stderr)
        return 2
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB; ONNX opset {OPSET}, dynamic batch axis; "
          f"patch threshold {float(detector.threshold):.6g} for the patch metrics, score {detector.score_kind}"
          + (f" width {detector.score_width})" if detector.score_kind == "strip" else ")"))
    if detector.operating_point is not None:
        point = detector.operating_point
        print(f"image threshold {detector.image_threshold():.6g} for {point.false_alarms_per_image:g} false alarms per "
              f"clean image of {point.windows_per_image:.0f} windows: the one rdcae.detect's verdicts use (ONNX "
              "metadata image_operating_point: the threshold for another rate without rdcae)")

    check = parity(detector, OnnxScorer(output), patches)
    print(f"parity onnxruntime vs PyTorch on {which}: max relative score difference "
          f"{check['max_relative_difference']:.2e}, decisions agree on {100 * check['decisions_agree']:.2f} % "
          f"({check['patches'] - check['disagreements']} of {check['patches']})")
    if check["max_relative_difference"] > TOLERANCE:
        print(f"error: onnxruntime's scores differ from PyTorch's by more than {TOLERANCE:g} (relative); "
              f"do not deploy {output}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
