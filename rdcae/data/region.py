"""Where an image shows fabric: everything except blank bands along its edges.

Most AITEX images start with a near-white, saturated band on the left, 950-1240 columns wide
over the full height; other scanners pad with constant borders. Patches cut there hold no
surface, so a model trained on them would learn the band rather than the fabric.

Rule: peel blank lines off the image edges (columns at the left and right, then rows at the
top and bottom of what remains, repeated until no edge line is blank). A band starts with a
blank line at the very edge, one that is mostly saturated (median >= 250) or flat (standard
deviation <= 2 gray levels), and extends inwards while lines stay flat or still hold a few
saturated pixels (>= 2 %). Two thresholds, as in hysteresis: the strict one keeps a bright
texture from losing lines to scattered highlights; the loose one follows the band's ragged,
sometimes stepped edge to its end, so no fabric patch keeps a sliver of white. Fabric itself
has almost no saturated pixels (at most 1 in 256 per column on the AITEX images). Only lines
that touch an edge are peeled, so a bright defect inside the fabric stays fabric.
"""

from __future__ import annotations

import numpy as np

SATURATED = 250  # gray value from which a pixel counts as clipped white
BAND_START_FRACTION = 0.5  # a band begins with a line that is mostly saturated ...
BAND_CONTINUE_FRACTION = 0.02  # ... and goes on while a line keeps a few saturated pixels
FLAT_STD = 2.0  # gray levels; a line this uniform carries no texture


def _edge_run(saturated: np.ndarray, std: np.ndarray) -> int:
    """Length of the blank band at index 0 of per-line statistics."""
    flat = std <= FLAT_STD
    if not (flat[0] or saturated[0] >= BAND_START_FRACTION):
        return 0
    inside = flat | (saturated >= BAND_CONTINUE_FRACTION)
    return len(inside) if inside.all() else int(np.argmin(inside))


def _band_widths(gray: np.ndarray, axis: int) -> tuple[int, int]:
    """Blank band lengths at the start and the end of `axis` (0: rows, 1: columns)."""
    over = 1 - axis
    saturated = (gray >= SATURATED).mean(axis=over)
    std = gray.std(axis=over)
    start = _edge_run(saturated, std)
    if start == len(std):
        return start, 0
    return start, _edge_run(saturated[::-1], std[::-1])


def fabric_region(image: np.ndarray, margin: int = 0) -> np.ndarray:
    """(H, W) bool, True where `image` (H, W, C) uint8 shows fabric.

    margin: also leave out this many pixels of fabric next to every band found (not at image
    edges the fabric runs past): AITEX's fabric starts at its white band with a selvedge strip,
    lighter and looser than the weave, about 60–100 pixels wide."""
    height, width = image.shape[:2]
    gray = image[:, :, 0] if image.shape[2] == 1 else image.mean(axis=2)
    gray = gray.astype(np.float32)
    region = np.zeros((height, width), dtype=bool)

    top, bottom, left, right = 0, height, 0, width
    while True:
        first, last = _band_widths(gray[top:bottom, left:right], axis=1)
        left, right = left + first, right - last
        if left >= right:
            return region
        first, last = _band_widths(gray[top:bottom, left:right], axis=0)
        if first == last == 0:
            break
        # Peeling rows can make the remaining part of a column blank (a frame's corner), so
        # look at the columns again; each further round is shorter, and AITEX needs none.
        top, bottom = top + first, bottom - last
        if top >= bottom:
            return region
    if margin:
        left, right = left + (margin if left > 0 else 0), right - (margin if right < width else 0)
        top, bottom = top + (margin if top > 0 else 0), bottom - (margin if bottom < height else 0)
        if left >= right or top >= bottom:
            return region
    region[top:bottom, left:right] = True
    return region
