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

Not every border is blank. Some AITEX images show, left of the fabric, another textured surface
(0062_022_00: brushed metal over 1,180 columns), a dark band, a bright edge line over the full
height, then a selvedge. With `texture=True`, a left or right side without a blank band is
searched for such a border by the weave itself: every band of 32 columns (at steps of 8) gets the
shape of its mean power spectrum over 32x32 tiles (normalised, so that brightness and contrast
drift do not count), compared with the median shape over the central half of the image, where
the fabric is. When the band at the image edge is EDGE_Z robust standard deviations unlike the
fabric, the border runs inwards while bands stay FOREIGN_Z unlike it, through the dark band, the
edge line and the selvedge. Another weave beside the fabric may differ from it by only a few
deviations (an AITEX fabric 00 weave beside fabric 03: 1-5), too little to tell at the edge; the
dark band and the edge line differ by tens. So a border also starts at a fence: a band FENCE_Z
unlike the fabric in the outer third of a side that holds an edge of the web over the full height
(a dark band and a bright line beside it), with at least MIN_SURFACE columns outside it whose
median band is FABRIC_Z unlike the fabric or more, or whose bands' median contrast is FABRIC_CONTRAST
times the fabric's or more (or as many times less: fabric 03's weave beside fabric 00 has a spectrum
so alike that it is often less than one deviation unlike it, and 1.5-2 times its contrast); the
innermost such fence counts, so a seam in the other surface does not cut the border short. This one
is searched beyond a blank band too, where the selvedge alone lies otherwise. A bright or a dark warp
stripe over the full height is one side of an edge only and stays fabric, and so does an edge-like line
with the fabric's own weave and contrast outside it; a full-height crease that shows both a shadow and a
highlight, with fabric outside it unlike the centre (near the selvedge), can be taken for an edge (a soft
crease of ±60 gray levels on 1 of 144 AITEX images; `benchmarks/region_borders.py crease`). The
fabric is taken to run top to bottom, as a line-scan camera sees the web: rows are not searched, so a
weft defect across the whole width stays fabric.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

SATURATED = 250  # gray value from which a pixel counts as clipped white
BAND_START_FRACTION = 0.5  # a band begins with a line that is mostly saturated ...
BAND_CONTINUE_FRACTION = 0.02  # ... and goes on while a line keeps a few saturated pixels
FLAT_STD = 2.0  # gray levels; a line this uniform carries no texture

TEXTURE_WINDOW = 32  # the weave's signature: the power spectrum of 32x32 tiles ...
TEXTURE_STEP = 8  # ... in bands of TEXTURE_WINDOW columns every TEXTURE_STEP columns
BAND_CHUNK = 64  # bands whose tiles go through one FFT call (2 MiB of tiles for a 256-row image)
EDGE_Z = 5.0  # robust z from which the band at the image edge is another surface (AITEX fabric: < 2)
FOREIGN_Z = 3.0  # a border goes on inwards while bands stay this unlike the fabric (a selvedge)
FENCE_Z = 15.0  # a band this unlike the fabric is a fence, such as an edge line (AITEX fabric, selvedge: < 10)
FABRIC_Z = 1.0  # ... and what lies outside it is fabric where its bands' median is below this ...
FABRIC_CONTRAST = 1.5  # ... and their contrast within this factor of the fabric's (AITEX fabric: 0.71-1.07, within
                       # 7 % of the lower bound 1/1.5 next to the selvedge: the edge marks keep that from a fence)
MIN_SURFACE = 256  # columns outside a fence, at least, for it to bound a surface (a warp defect nearer stays)
EDGE_CONTRAST = 6.0  # a fence holds a dark band and a bright line this many robust deviations off the fabric's columns
EDGE_DARK = 4  # columns of dark band, at least
AUTO = "auto"  # edge_margin=auto: the selvedge as each image shows it, instead of a number of pixels
SELVEDGE_Z = 3.0  # a band next to a band or border this unlike the fabric's weave is selvedge ...
SELVEDGE_REACH = 128  # ... when it lies within this many columns of it (AITEX's selvedge: 40-104 columns) ...
SELVEDGE_SHARE = 0.05  # ... and within this share of the fabric's width (AITEX: 3,000 columns; a part's image of a
                       # few hundred columns, whose rim is no selvedge, loses none)


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


def _bands(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bands of TEXTURE_WINDOW columns every TEXTURE_STEP columns of `gray` (H, W): their left
    columns (B,), the image's rows of TEXTURE_WINDOW-square tiles (rows, TEXTURE_WINDOW, W), and which
    bands lie in the central half, where the fabric is (B,) bool."""
    size = TEXTURE_WINDOW
    height, width = gray.shape
    starts = np.arange(0, width - size + 1, TEXTURE_STEP)
    centre = (starts >= width / 4) & (starts + size <= 3 * width / 4)
    return starts, gray[: height // size * size].reshape(height // size, size, width), centre


def _weave_z(gray: np.ndarray, reach: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Left columns (B,) of the bands of TEXTURE_WINDOW columns, and how unlike the fabric's weave
    each band is (B,): the median over its tiles of their robust z, the distance of a tile's
    spectral shape to the fabric's (the median shape of the central tiles), in units of the
    central tiles' spread. The median over a band's height keeps a local defect from making the
    band foreign. None when the image is too small to tell the fabric from its border. `reach`: only
    the bands that end within this many columns of either side are wanted (the others' z is NaN)."""
    size = TEXTURE_WINDOW
    starts, tiles, centre = _bands(gray)
    rows = len(tiles)
    if rows == 0 or centre.sum() < 8:
        return None
    wanted = np.ones(len(starts), bool) if reach is None else (
        (starts + size <= reach) | (gray.shape[1] - starts <= reach) | centre)
    chosen = np.flatnonzero(wanted)
    shapes = np.empty((len(chosen), rows, size * (size // 2 + 1)), np.float32)  # (B', rows, F)
    windows = np.lib.stride_tricks.sliding_window_view(tiles, size, axis=2)[:, :, ::TEXTURE_STEP]  # (rows, P, B, P)
    for lo in range(0, len(chosen), BAND_CHUNK):  # a few bands' tiles at a time: one FFT call, bounded memory
        t = windows[:, :, chosen[lo : lo + BAND_CHUNK]].transpose(2, 0, 1, 3).astype(np.float32, order="C")
        power = np.abs(scipy.fft.rfft2(t - t.mean(axis=(2, 3), keepdims=True))) ** 2  # t: (b, rows, P, P)
        power[:, :, 0, 0] = 0
        power = power.reshape(len(t), rows, -1)
        shapes[lo : lo + BAND_CHUNK] = np.log(power / np.maximum(power.sum(axis=2, keepdims=True), 1e-12) + 1e-6)
    central = centre[chosen]
    fabric = np.median(shapes[central].reshape(-1, shapes.shape[-1]), axis=0)
    distance = np.abs(shapes - fabric).mean(axis=2)  # (B', rows)
    median = np.median(distance[central])
    spread = 1.4826 * np.median(np.abs(distance[central] - median))
    found = np.median((distance - median) / max(float(spread), 1e-6), axis=1)
    if len(chosen) == len(starts):
        return starts, found
    z = np.full(len(starts), np.nan, found.dtype)
    z[chosen] = found
    return starts, z


def _edge_marks(gray: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Whether each band of TEXTURE_WINDOW columns at `starts` (B,), with as many columns on either
    side, holds what an edge of the web shows over the full height: a dark band (EDGE_DARK columns or
    more whose median over the rows is EDGE_CONTRAST robust deviations below the fabric's columns) and a
    bright line beside it (a column as far above them, each row's brightest pixel within 2 columns
    counted, so that a line a little off vertical still shows). A dark or a bright warp defect alone is
    no edge. (B,) bool."""
    width = gray.shape[1]
    darkness = np.median(gray, axis=0)  # (W,)
    brightest = gray.copy()  # each pixel's row neighbourhood of 5 columns, its brightest
    for k in (1, 2):
        np.maximum(brightest[:, k:], gray[:, :-k], out=brightest[:, k:])
        np.maximum(brightest[:, :-k], gray[:, k:], out=brightest[:, :-k])
    brightness = np.median(brightest, axis=0)  # (W,)

    def robust_z(values: np.ndarray) -> np.ndarray:
        centre = values[width // 4 : 3 * width // 4]
        median = np.median(centre)
        return (values - median) / max(1.4826 * float(np.median(np.abs(centre - median))), 1e-6)

    dark, bright = robust_z(darkness) < -EDGE_CONTRAST, robust_z(brightness) > EDGE_CONTRAST
    marks = np.zeros(len(starts), bool)
    for i, x in enumerate(starts):
        lo, hi = max(0, x - TEXTURE_WINDOW), min(width, x + 2 * TEXTURE_WINDOW)
        marks[i] = dark[lo:hi].sum() >= EDGE_DARK and bright[lo:hi].any()
    return marks


def _band_contrast(gray: np.ndarray) -> np.ndarray:
    """The contrast of each band of `_bands(gray)` (B,): the median over its tiles of their standard
    deviation, over the median of the central bands' (the fabric's). (B,)"""
    _, tiles, centre = _bands(gray)
    windows = np.lib.stride_tricks.sliding_window_view(tiles, TEXTURE_WINDOW, axis=2)[:, :, ::TEXTURE_STEP]
    contrast = np.median(windows.std(axis=(1, 3)), axis=0)  # (rows, P, B, P) -> (B,)
    return contrast / max(float(np.median(contrast[centre])), 1e-6)


def _border_width(z: np.ndarray, offsets: np.ndarray, blank: bool, edges: np.ndarray, contrast: np.ndarray) -> int:
    """Columns of textured border from one side, given the bands' z ordered from that side, their
    offsets (B,) from it, whether each holds an edge of the web (B,) bool and its contrast relative to the
    fabric's (B,). The border starts at the side when the band there is unlike the fabric (unless `blank`:
    a blank band was peeled off that side, and the fabric's selvedge lies there), or at the innermost
    fence in the outer third: a band far unlike the fabric that holds an edge, with a surface outside it
    unlike the fabric in its weave or in its contrast."""
    starts = [0] if not blank and z[0] >= EDGE_Z else []
    fences = (z >= FENCE_Z) & edges & (offsets >= MIN_SURFACE) & (offsets <= offsets[-1] / 3)
    for i in np.flatnonzero(fences):
        outside_contrast = float(np.median(contrast[:i]))
        if np.median(z[:i]) >= FABRIC_Z or not (1 / FABRIC_CONTRAST < outside_contrast < FABRIC_CONTRAST):
            starts.append(int(i))
    width = 0
    for start in starts:  # the border runs inwards from where it starts while bands stay unlike the fabric
        inside = z[start:] > FOREIGN_Z
        i = start + (len(inside) - 1 if inside.all() else int(np.argmin(inside)) - 1)
        width = max(width, int(offsets[i]) + TEXTURE_WINDOW)
    return width


def texture_borders(gray: np.ndarray, blank: tuple[bool, bool] = (False, False)) -> tuple[int, int]:
    """Columns of textured border at the left and at the right of `gray` (H, W) float: another
    surface, a dark band, an edge line and the selvedge inside them (module docstring). `blank`: whether
    a blank band was peeled off the left and the right of `gray` first."""
    found = _weave_z(gray)
    if found is None:
        return 0, 0
    starts, z = found
    width = gray.shape[1]
    outer = (starts <= (width - TEXTURE_WINDOW) / 3) | (starts >= 2 * (width - TEXTURE_WINDOW) / 3)
    candidates = (z >= FENCE_Z) & outer  # where a fence could be: only there are the columns' statistics needed
    if candidates.any():
        edges, contrast = _edge_marks(gray, starts), _band_contrast(gray)
    else:  # no fence anywhere: neither is read
        edges, contrast = np.zeros(len(starts), bool), np.ones(len(starts))
    return (_border_width(z, starts, blank[0], edges, contrast),
            _border_width(z[::-1], (width - TEXTURE_WINDOW - starts)[::-1], blank[1], edges[::-1], contrast[::-1]))


def margin_setting(value) -> int | str | None:
    """dataset.edge_margin (rdcae.detect's edge_margin=) as fabric_region takes it: AUTO or whole pixels >= 0
    (unset: 0); None for anything else."""
    if value is None or value == AUTO:
        return value or 0
    if isinstance(value, str) and value.strip().isdigit():  # a number written as text in a YAML file
        return int(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def selvedge_widths(gray: np.ndarray, sides: tuple[bool, bool]) -> tuple[int, int]:
    """Columns of selvedge at the left and the right of `gray` (H, W) float, the fabric once its bands and
    borders are off, at the `sides` where one was found: out to the innermost band of TEXTURE_WINDOW columns
    within SELVEDGE_REACH (and SELVEDGE_SHARE of the width) of that side that is SELVEDGE_Z unlike the fabric's
    weave (the selvedge's looser yarn; its width changes from image to image, and its lighter shade does not
    count)."""
    reach = min(SELVEDGE_REACH, SELVEDGE_SHARE * gray.shape[1])
    found = _weave_z(gray, reach) if reach >= TEXTURE_WINDOW and any(sides) else None
    if found is None:
        return 0, 0
    starts, z = found
    widths = []
    for side, (zs, offsets) in zip(sides, ((z, starts), (z[::-1], (gray.shape[1] - TEXTURE_WINDOW - starts)[::-1]))):
        near = np.flatnonzero((zs > SELVEDGE_Z) & (offsets + TEXTURE_WINDOW <= reach)) if side else []
        widths.append(int(offsets[near[-1]]) + TEXTURE_WINDOW if len(near) else 0)
    return widths[0], widths[1]


def fabric_region(image: np.ndarray, margin: int | str = 0, texture: bool = False) -> np.ndarray:
    """(H, W) bool, True where `image` (H, W, C) uint8 shows fabric.

    margin: also leave out this many pixels of fabric next to every band or border found (not at
    image edges the fabric runs past): AITEX's fabric starts at its white band with a selvedge
    strip, lighter and looser than the weave, about 60–100 pixels wide; AUTO: the selvedge's columns
    as this image shows them, at the left and the right (selvedge_widths).
    texture: also look for textured borders at the left and the right: at a side without a blank band,
    and beyond a blank band where a fence (an edge line) bounds another surface."""
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
    if texture:
        cut_left, cut_right = texture_borders(gray[top:bottom, left:right], (left > 0, right < width))
        left, right = left + cut_left, right - cut_right
        if left >= right:
            return region
    if margin == AUTO:
        cut_left, cut_right = selvedge_widths(gray[top:bottom, left:right], (left > 0, right < width))
        left, right = left + cut_left, right - cut_right
        if left >= right:
            return region
    elif margin:
        left, right = left + (margin if left > 0 else 0), right - (margin if right < width else 0)
        top, bottom = top + (margin if top > 0 else 0), bottom - (margin if bottom < height else 0)
        if left >= right or top >= bottom:
            return region
    region[top:bottom, left:right] = True
    return region
