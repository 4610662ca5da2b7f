"""Even out the lighting of an image before anything is cut from it (dataset.lighting).

A camera over a production line rarely sees every part under the same light: the gain changes
from image to image, and a curved or tilted part is brighter on one side. The reconstruction
error of a window grows with its contrast, so a brighter image scores higher everywhere: its
clean windows rise above the threshold and the defects of a darker one fall below it.

    even_lighting(image, mode) -> image

mode
  none   the image as it is (AITEX and the embedded fabric are lit evenly)
  image  one gray-level map per image: its median goes to 128 and its spread (the interquartile
         range, in standard deviations of a normal distribution) to SPREAD gray levels; undoes a
         gain and an offset, keeps a shading across the image
  local  the same at every pixel, with the mean and spread of its neighbourhood (a smooth window
         of about SCALE pixels, 4 patches): undoes shading across the image too; a defect much larger
         than the window is evened out with the light, one smaller keeps its contrast
  gain   the gray levels scaled so that the fabric's median is the training images' (their median
         median, kept in the model file as LIGHTING_REFERENCE): undoes a camera's gain, keeps the
         texture's own contrast, and a defect on less than half the fabric moves the median little;
         scaled up, the brightest levels are clipped at 255

The result is uint8 again (values beyond ±4 spreads are clipped; with gain, beyond 0-255), so the
patches, their cache and the exported graph stay as they are. Training and rdcae.detect apply the run's
mode to every image once its fabric region has been found on the image as read, and measure the lighting
on the fabric alone: a blank band keeps its flatness there (evened, its noise would look like texture),
and does not light the fabric beside it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

MODES = ("none", "image", "local", "gain")
CENTRE = 128.0
SPREAD = 32.0  # gray levels per standard deviation of the surface: ±4 fit in 0-255
SCALE = 128  # pixels: the neighbourhood of mode "local"
FLOOR = 2.0  # gray levels: a flat area (a blank band) is not blown up into noise
# the mark, in a detector's config and a checkpoint's, of a run whose lighting was measured on the fabric alone
LIGHTING_ON_FABRIC = "lighting_on_fabric"
# mode "gain": the fabric median every image is scaled to, in a detector's config
LIGHTING_REFERENCE = "lighting_reference"


def _spread_image(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q1, median, q3 = np.percentile(x, [25, 50, 75], axis=(0, 1))
    return median, (q3 - q1) / 1.349


def _spread_local(x: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    size = (min(scale, x.shape[0]), min(scale, x.shape[1]), 1)

    def smooth(a: np.ndarray) -> np.ndarray:  # two box filters: a triangle of about `scale` pixels
        half = tuple(max(1, s // 2) for s in size[:2]) + (1,)
        return uniform_filter(uniform_filter(a, half, mode="reflect"), half, mode="reflect")

    mean = smooth(x)
    return mean, np.sqrt(np.maximum(smooth((x - mean) ** 2), 0))


def _spread_on(x: np.ndarray, fabric: np.ndarray, mode: str, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """As _spread_image and _spread_local, from the pixels of the fabric region alone (H, W) bool."""
    if mode == "image":
        return _spread_image(x[fabric][:, None])
    size = (min(scale, x.shape[0]), min(scale, x.shape[1]), 1)
    half = tuple(max(1, s // 2) for s in size[:2]) + (1,)
    weight = fabric[:, :, None].astype(np.float32)

    def smooth(a: np.ndarray) -> np.ndarray:  # the mean over a neighbourhood's fabric pixels
        return uniform_filter(uniform_filter(a, half, mode="reflect"), half, mode="reflect")

    share = np.maximum(smooth(weight), 1e-6)
    mean = smooth(x * weight) / share
    return mean, np.sqrt(np.maximum(smooth((x - mean) ** 2 * weight) / share, 0))


def even_lighting(image: np.ndarray, mode: str = "none", scale: int = SCALE,
                  fabric: np.ndarray | None = None, reference: float | None = None) -> np.ndarray:
    """(H, W, C) uint8 → (H, W, C) uint8 with its lighting evened out per `mode` (see the module), measured on
    the pixels of `fabric` (H, W) bool alone where given: a white band or a border beside the fabric would
    otherwise darken and flatten the fabric next to it, by as much as its edge happens to lie near. Mode
    "gain" scales the fabric's median to `reference`."""
    if mode == "none":
        return image
    if mode not in MODES:
        raise ValueError(f"lighting mode {mode!r}: choose one of {', '.join(MODES)}")
    x = image.astype(np.float32)
    if mode == "gain":
        if reference is None:
            raise ValueError("lighting mode 'gain' needs the training images' fabric median (reference=)")
        return np.clip(x * (reference / max(fabric_levels(image, fabric)[0], FLOOR)), 0, 255).round().astype(np.uint8)
    if fabric is not None and fabric.any() and not fabric.all():
        centre, spread = _spread_on(x, fabric, mode, scale)
    else:
        centre, spread = _spread_image(x) if mode == "image" else _spread_local(x, scale)
    y = CENTRE + SPREAD * (x - centre) / np.maximum(spread, FLOOR)
    return np.clip(y, 0, 255).round().astype(np.uint8)


# The gray levels of a model's training images on their fabric (a detector config's key): where the run evens
# no lighting out, an image brighter, darker or of another contrast than all of them is judged on levels the
# network never saw, and a line camera's exposure drifting by a few percent is enough to flag clean fabric
# (benchmarks/exposure_drift.py). MEDIAN_SLACK (of the fabric's spread) and SPREAD_SLACK (a ratio) widen their range.
FABRIC_LEVELS = "fabric_levels"
MEDIAN_SLACK = 0.1
SPREAD_SLACK = 1.1


def fabric_levels(image: np.ndarray, fabric: np.ndarray | None = None) -> tuple[float, float]:
    """The median gray level (of the luminance, in colour) of an (H, W, C) uint8 image on its `fabric` (H, W)
    bool region (the whole image where None or empty) and its spread (the interquartile range in standard
    deviations of a normal distribution), from every other row: a defect on a small part of the fabric moves
    neither, a change of exposure both."""
    image, fabric = image[::2], None if fabric is None else fabric[::2]  # every other row: the levels in half the time
    x = image[fabric] if fabric is not None and fabric.any() else image.reshape(-1, image.shape[-1])
    if x.shape[-1] == 3:  # colour: the luminance, so that a shift of hue is no change of contrast
        x = (x @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
    counts = np.cumsum(np.bincount(x.ravel(), minlength=256))  # uint8: quartiles from the histogram, at once
    q1, median, q3 = np.searchsorted(counts, np.array([0.25, 0.5, 0.75]) * counts[-1])
    return float(median), float((q3 - q1) / 1.349)


def levels_range(levels: list[tuple[float, float]]) -> dict:
    """The range of the (median, spread) levels of a run's training images, as its detector config keeps it."""
    medians, spreads = zip(*levels)
    return {"median": [round(min(medians), 3), round(max(medians), 3)],
            "spread": [round(min(spreads), 3), round(max(spreads), 3)]}


def unlike_levels(levels: tuple[float, float], known: dict) -> str:
    """How an image's fabric `levels` (median, spread) lie outside those of the training images (`known`,
    levels_range), widened by MEDIAN_SLACK and SPREAD_SLACK: 'brighter', 'darker', 'of higher contrast', 'of lower
    contrast' (joined by 'and'), or '' within them."""
    (low, high), (spread_low, spread_high) = known["median"], known["spread"]
    slack = MEDIAN_SLACK * (spread_low + spread_high) / 2
    median, spread = levels
    said = ["brighter"] * (median > high + slack) + ["darker"] * (median < low - slack)
    said += (["of higher contrast"] * (spread > spread_high * SPREAD_SLACK)
             + ["of lower contrast"] * (spread < spread_low / SPREAD_SLACK))
    return " and ".join(said)
