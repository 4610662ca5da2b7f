"""The embedded woven fabric: woven gray textures with real-looking defects and exact masks.

Lets every command run on a fresh machine with nothing downloaded. One call draws one fabric
type (weave, yarn spacing, brightness, contrast, noise: what an AITEX fabric code fixes) and
weaves defect-free and defective images of it, as a line-scan camera would see them.

The defects are deliberately not Julia fractals: those decorate the training patches
(`rdcae.noise`), and the test defects must be a different, physical kind of damage: broken
or missing yarns, thick bars, holes, stains, knots. A defective image is rendered from the same
random draws as its clean twin, so its mask is exactly the set of pixels the defects changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rdcae.data.sources import SourceImage
from rdcae.errors import ConfigError

WEAVES = ("plain", "twill")
DEFECT_KINDS = ("broken_yarn", "missing_yarn", "thick_bar", "hole", "stain", "knot")

# A pixel belongs to a defect when the defect moved it by more than this many gray levels
# before sensor noise: about the smallest step a person notices on this texture.
MASK_LEVEL = 4.0

_PAD = 6  # spare yarns around the image, so pushed coordinates never index outside
_LENS = 0.7  # blur sigma of the camera, px
_REACH = 2  # margin around a changed box: the blur carries a change 1 px, plus one spare


@dataclass(frozen=True)
class Fabric:
    """One fabric type: everything that normal and defect images of a dataset share."""

    weave: str
    period: float        # warp spacing, px; warp yarns run vertically
    aspect: float        # weft spacing / warp spacing
    repeat: int          # weave repeat in yarns: 2 for plain, 3 or 4 for twill
    float_len: int       # crossings of the repeat a warp floats over
    direction: int       # +1 or -1: which diagonal a twill runs along
    thickness: float     # yarn width / spacing
    weft_gain: float     # weft brightness relative to warp: makes the floats visible
    level: float         # mean gray level
    contrast: float      # texture std, gray levels
    noise: float         # sensor noise std, gray levels
    irregularity: float  # relative spread of yarn brightness and thickness

    @classmethod
    def sample(cls, rng: np.random.Generator, weave: str) -> Fabric:
        """Draw a fabric type of the given weave."""
        if weave == "plain":
            repeat, float_len, direction = 2, 1, 1
        else:
            repeat, float_len = [(3, 2), (4, 2), (4, 3)][rng.integers(3)]
            direction = int(rng.choice([-1, 1]))
        return cls(
            weave=weave,
            period=float(rng.uniform(4.5, 7.0)),
            aspect=float(rng.uniform(0.8, 1.1)),
            repeat=repeat,
            float_len=float_len,
            direction=direction,
            thickness=float(rng.uniform(0.78, 0.95)),
            weft_gain=float(rng.uniform(0.6, 0.8)),
            level=float(rng.uniform(90.0, 135.0)),
            contrast=float(rng.uniform(16.0, 24.0)),
            noise=float(rng.uniform(2.0, 3.5)),
            irregularity=float(rng.uniform(0.03, 0.07)),
        )

    @property
    def weft_period(self) -> float:
        return self.period * self.aspect


# ---------------------------------------------------------------------------------------------
# Array helpers (numpy only, so the package keeps its short dependency list)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Random field of std about 1 that varies over `cell` px (smoothstep lattice noise)."""
    grid = rng.standard_normal((int(h / cell) + 3, int(w / cell) + 3)).astype(np.float32)
    y = np.arange(h, dtype=np.float32) / np.float32(cell)
    x = np.arange(w, dtype=np.float32) / np.float32(cell)
    y0, x0 = y.astype(np.int32), x.astype(np.int32)
    ty, tx = y - y0, x - x0
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)  # no creases at lattice lines
    rows = grid[y0] * (1 - ty)[:, None] + grid[y0 + 1] * ty[:, None]
    return (rows[:, x0] * (1 - tx) + rows[:, x0 + 1] * tx) * np.float32(1.6)


def _streaks(rng: np.random.Generator, h: int, w: int, length: int, axis: int) -> np.ndarray:
    """Fibre texture: white noise stretched `length` px along `axis` (0 = vertical)."""
    if axis == 1:
        return _streaks(rng, w, h, length, 0).T.copy()
    coarse = rng.standard_normal((h // length + 2, w)).astype(np.float32)
    y = np.arange(h, dtype=np.float32) / np.float32(length)
    y0 = y.astype(np.int32)
    t = (y - y0)[:, None]
    return coarse[y0] * (1 - t) + coarse[y0 + 1] * t


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable 3-tap Gaussian blur (enough for sigma < 1 px), edges padded by replication."""
    side = np.float32(np.exp(-0.5 / sigma**2))
    side, centre = side / (1 + 2 * side), 1 / (1 + 2 * side)
    h, w = img.shape
    p = np.pad(img, 1, mode="edge")
    rows = p[1:-1] * centre
    rows += (p[:-2] + p[2:]) * side
    out = rows[:, 1:-1] * centre
    out += (rows[:, :-2] + rows[:, 2:]) * side
    return out


def _morph(mask: np.ndarray, r: int, grow: bool) -> np.ndarray:
    """Binary dilation (grow) or erosion with a disc of radius r."""
    h, w = mask.shape
    p = np.pad(mask, r, constant_values=not grow)
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= r * r:
                s = p[r + dy : r + dy + h, r + dx : r + dx + w]
                out = (out | s) if grow else (out & s)
    return out


def _smooth_step(d: np.ndarray, edge: float) -> np.ndarray:
    """1 where d < 1, 0 beyond, with a smooth edge `edge` wide (in units of d)."""
    t = np.clip((1.0 - d) / edge + 0.5, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _box(y0, y1, x0, x1, shape, margin=0) -> tuple[slice, slice]:
    h, w = shape
    return (
        slice(max(int(y0) - margin, 0), min(int(np.ceil(y1)) + margin, h)),
        slice(max(int(x0) - margin, 0), min(int(np.ceil(x1)) + margin, w)),
    )


# ---------------------------------------------------------------------------------------------
# Weaving


@dataclass
class _Loom:
    """The random draws of one image, shared by its clean and its defective rendering."""

    fabric: Fabric
    u: np.ndarray           # (H, W) warp coordinate: yarn index + position across the yarn
    v: np.ndarray           # (H, W) weft coordinate
    cells: np.ndarray       # (n_weft, n_warp) uint8: bit 0 warp on top, bits 1-2 float ends
    warp_gain: np.ndarray   # (n_warp,) brightness of each warp yarn
    weft_gain: np.ndarray   # (n_weft,)
    warp_width: np.ndarray  # (n_warp,) width / spacing
    weft_width: np.ndarray  # (n_weft,)
    cell_gain: np.ndarray   # (n_weft, n_warp) brightness along the floats
    warp_fibres: np.ndarray  # (H, W) multiplicative fibre texture along the warp
    weft_fibres: np.ndarray  # (H, W)
    light: np.ndarray       # (H, W) illumination times the line-scan column gain
    sensor: np.ndarray      # (H, W) noise, gray levels
    scale: float = 1.0      # texture -> gray levels, fixed from the clean rendering
    offset: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.shape


def _loom(rng: np.random.Generator, fab: Fabric, h: int, w: int) -> _Loom:
    # images of one fabric differ slightly in density and in where the weave starts
    px = fab.period * rng.uniform(0.97, 1.03)
    py = fab.weft_period * rng.uniform(0.97, 1.03)
    n_warp, n_weft = int(w / px) + 2 * _PAD + 2, int(h / py) + 2 * _PAD + 2
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    # yarns are never straight: a smooth displacement makes them wander a fraction of a yarn
    wander = np.float32(0.12)
    u = x / np.float32(px) + np.float32(_PAD + rng.uniform(0, 1))
    u = u + wander * _smooth_noise(rng, h, w, rng.uniform(25, 60))
    v = y / np.float32(py) + np.float32(_PAD + rng.uniform(0, 1))
    v = v + wander * _smooth_noise(rng, h, w, rng.uniform(25, 60))

    i, j = np.mgrid[0:n_weft, 0:n_warp]
    warp_top = (j + fab.direction * i + rng.integers(fab.repeat)) % fab.repeat < fab.float_len
    # a float dips where its yarn dives under the crossing one: flag the float's two ends
    # (for the warp: weft on top in the cell above / below; for the weft: left / right)
    dive_prev = np.where(warp_top, ~np.roll(warp_top, 1, 0), np.roll(warp_top, 1, 1))
    dive_next = np.where(warp_top, ~np.roll(warp_top, -1, 0), np.roll(warp_top, -1, 1))
    cells = (warp_top | dive_prev << 1 | dive_next << 2).astype(np.uint8)

    irr = fab.irregularity
    f32 = np.float32

    def spread(n, scale):  # one draw per yarn, clipped so no yarn vanishes or overlaps
        return np.clip(fab.thickness * (1 + scale * irr * rng.standard_normal(n)), 0.5, 1.05).astype(f32)

    light = (
        1
        + rng.uniform(-0.06, 0.06) * (x / w - 0.5)
        + rng.uniform(-0.04, 0.04) * (y / h - 0.5)
        + 0.02 * _smooth_noise(rng, h, w, rng.uniform(80, 200))
    ) * (1 + 0.005 * rng.standard_normal(w)).astype(f32)
    return _Loom(
        fabric=fab,
        u=u,
        v=v,
        cells=cells,
        warp_gain=(1 + irr * rng.standard_normal(n_warp)).astype(f32),
        weft_gain=(fab.weft_gain * (1 + irr * rng.standard_normal(n_weft))).astype(f32),
        warp_width=spread(n_warp, 1.5),
        weft_width=spread(n_weft, 1.5),
        cell_gain=(1 + 0.6 * irr * rng.standard_normal((n_weft, n_warp))).astype(f32),
        warp_fibres=1 + f32(0.06) * _streaks(rng, h, w, int(rng.integers(5, 10)), 0),
        weft_fibres=1 + f32(0.06) * _streaks(rng, h, w, int(rng.integers(5, 10)), 1),
        light=light,
        sensor=(fab.noise * rng.standard_normal((h, w), dtype=f32)),
    )


@dataclass
class _Damage:
    """What the defects of one image do to its weaving, composed before it is rendered.

    fields: per-pixel changes, created on first use:
        du, dv             yarn coordinates pushed aside (added)
        no_warp, no_weft   the yarn is absent here
        warp_gain, weft_gain, warp_width, weft_width   multipliers
    layers: applied to the woven texture in order, (alpha, value) -> tex (1 - alpha) + alpha value,
        value a scalar or an (H, W) array; alpha None means multiply tex by value.
    boxes:  one (rows, cols) slice pair per defect, the pixels it may change.
    """

    shape: tuple[int, int]
    fields: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    boxes: list = field(default_factory=list)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.fields:
            if name.startswith("no_"):
                self.fields[name] = np.zeros(self.shape, bool)
            else:
                self.fields[name] = np.full(self.shape, 0 if name in ("du", "dv") else 1, np.float32)
        return self.fields[name]

    def window(self, name: str, win):
        f = self.fields.get(name)
        return None if f is None else f[win]


def _profile(f: np.ndarray, inv_half_width: np.ndarray) -> np.ndarray:
    """Brightness across a round yarn lit from the front: 1 on its crest, 0 in the gap."""
    t = (f - np.float32(0.5)) * inv_half_width
    t *= t
    np.subtract(1.0, t, out=t)
    return np.sqrt(np.maximum(t, 0.0, out=t), out=t)


def _dip(f: np.ndarray) -> np.ndarray:
    """Darkening near the end of a float (f = 0), gone a quarter yarn away."""
    t = np.maximum(1.0 - f * np.float32(4.0), 0.0)
    return t * t


def _weave(loom: _Loom, dmg: _Damage | None = None, win=None) -> np.ndarray:
    """Texture in relative brightness (about 0..1.2) of the window `win`, before light and noise."""
    dmg = dmg or _Damage(loom.shape)
    rows, cols = win or (slice(0, loom.shape[0]), slice(0, loom.shape[1]))
    tex = np.empty((rows.stop - rows.start, cols.stop - cols.start), np.float32)
    # a few dozen array operations per pixel run twice as fast on cache-sized strips
    step = max(1, 32768 // tex.shape[1])
    for y in range(rows.start, rows.stop, step):
        strip = slice(y, min(y + step, rows.stop))
        tex[y - rows.start : strip.stop - rows.start] = _strip(loom, dmg, (strip, cols))
    return _blur(tex, _LENS)


def _strip(loom: _Loom, dmg: _Damage, win) -> np.ndarray:
    u, v = loom.u[win], loom.v[win]
    if (du := dmg.window("du", win)) is not None:
        u = u + du
    if (dv := dmg.window("dv", win)) is not None:
        v = v + dv
    n_weft, n_warp = loom.cells.shape
    uf, vf = np.floor(u), np.floor(v)
    fu, fv = u - uf, v - vf
    j = np.clip(uf.astype(np.int32), 1, n_warp - 2)
    i = np.clip(vf.astype(np.int32), 1, n_weft - 2)
    cell = i * n_warp + j
    code = np.take(loom.cells.ravel(), cell)
    warp_top = (code & 1).astype(bool)

    # 1 / half-width, looked up per yarn: a division per pixel costs more than the lookup
    warp_k, weft_k = np.take(2 / loom.warp_width, j), np.take(2 / loom.weft_width, i)
    warp_b = np.take(loom.warp_gain, j) * loom.warp_fibres[win]
    weft_b = np.take(loom.weft_gain, i) * loom.weft_fibres[win]
    for name, value in (("warp_width", warp_k), ("weft_width", weft_k)):
        if (m := dmg.window(name, win)) is not None:
            value /= m
    for name, value in (("warp_gain", warp_b), ("weft_gain", weft_b)):
        if (m := dmg.window(name, win)) is not None:
            value *= m
    warp_p, weft_p = _profile(fu, warp_k), _profile(fv, weft_k)
    if (gone := dmg.window("no_warp", win)) is not None:
        warp_p[gone] = 0
        warp_top &= ~gone
    if (gone := dmg.window("no_weft", win)) is not None:
        weft_p[gone] = 0
        warp_top |= gone

    # the yarn on top hides the one below except in the gaps beside it, where the lower one
    # shows, shadowed; where neither is, the dark backing shows
    along = np.where(warp_top, fv, fu)
    dive = 1 - np.float32(0.35) * ((code >> 1 & 1) * _dip(along) + (code >> 2 & 1) * _dip(1 - along))
    top_p, under_p = np.where(warp_top, warp_p, weft_p), np.where(warp_top, weft_p, warp_p)
    top_b, under_b = np.where(warp_top, warp_b, weft_b), np.where(warp_top, weft_b, warp_b)
    cell_gain = np.take(loom.cell_gain.ravel(), cell)
    tex = top_p * top_b * dive * cell_gain + (1 - top_p) * (0.18 + 0.45 * under_p * under_b)
    for alpha, value in dmg.layers:
        value = value[win] if isinstance(value, np.ndarray) else value
        tex = tex * value if alpha is None else tex * (1 - alpha[win]) + alpha[win] * value
    return tex


def _gray(loom: _Loom, tex: np.ndarray, win=(slice(None), slice(None))) -> np.ndarray:
    """Texture -> gray levels, before noise."""
    return (loom.offset + loom.scale * tex) * loom.light[win]


# ---------------------------------------------------------------------------------------------
# Defects. Each draws its size and place, records what it does in `dmg`, and its box.
# `ref` = (mean, std) of the clean texture, so contrasts follow the fabric's own contrast.


def _spot(rng, loom: _Loom, margin: float) -> tuple[float, float]:
    """A random (y, x) at least `margin` px inside the image where it fits, so that the defect
    is seen whole rather than a sliver of it at the border."""
    return tuple(float(rng.uniform(min(margin, n / 2), max(n - margin, n / 2))) for n in loom.shape)


def _yarn_at(rng, loom: _Loom, margin: float = 8):
    """A yarn direction (0: a warp, vertical; 1: a weft, horizontal) and a random pixel."""
    y, x = _spot(rng, loom, margin)
    return int(rng.integers(2)), int(y), int(x)


def _yarn_band(loom: _Loom, axis: int, y: int, x: int, lo: int, hi: int) -> np.ndarray:
    """Pixels of the yarn through (y, x), from `lo` to `hi` along its length."""
    band = np.zeros(loom.shape, bool)
    if axis == 0:
        band[lo:hi] = np.floor(loom.u[lo:hi]) == np.floor(loom.u[y, x])
    else:
        band[:, lo:hi] = np.floor(loom.v[:, lo:hi]) == np.floor(loom.v[y, x])
    return band


def _bbox(mask: np.ndarray, shape, margin: int = 0):
    ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return _box(ys[0], ys[-1] + 1, xs[0], xs[-1] + 1, shape, margin)


def _polyline_alpha(shape, pts: np.ndarray, width: float) -> np.ndarray:
    """Soft alpha (H, W) of a polyline through `pts` (K, 2) given as (y, x)."""
    alpha = np.zeros(shape, np.float32)
    r = int(width + 3)
    win = _box(pts[:, 0].min() - r, pts[:, 0].max() + r, pts[:, 1].min() - r, pts[:, 1].max() + r, shape)
    yy, xx = np.mgrid[win].astype(np.float32)
    if yy.size == 0:
        return alpha
    d = np.full(yy.shape, np.inf, np.float32)
    for a, b in zip(pts[:-1], pts[1:]):
        ab = b - a
        t = np.clip(((yy - a[0]) * ab[0] + (xx - a[1]) * ab[1]) / max(float(ab @ ab), 1e-6), 0, 1)
        d = np.minimum(d, np.hypot(yy - a[0] - t * ab[0], xx - a[1] - t * ab[1]))
    alpha[win] = _smooth_step(d / (width / 2), 0.8)
    return alpha


def _broken_yarn(rng, loom: _Loom, dmg: _Damage, ref) -> None:
    """A short stretch of one yarn cut, leaving a gap and a loose end curling out of it, or
    pulled sideways out of its row."""
    h, w = loom.shape
    axis, y, x = _yarn_at(rng, loom)
    size = (h, w)[axis]
    length = int(rng.uniform(8, 28))
    lo = int(np.clip((y, x)[axis] - length // 2, 0, size - length))
    hi = lo + length
    band = _yarn_band(loom, axis, y, x, lo, hi)
    if rng.random() < 0.35:
        # pulled: the stretch slid sideways by most of a yarn, dragging the yarns beside it
        shift = rng.choice([-1, 1]) * rng.uniform(0.5, 0.9)
        ramp = np.sqrt(np.sin(np.linspace(0, np.pi, length)).clip(0)).astype(np.float32)
        name, coord = ("du", loom.u) if axis == 0 else ("dv", loom.v)
        near = np.abs(coord - (np.floor(coord[y, x]) + 0.5)) < 1.5
        along = np.zeros(size, np.float32)
        along[lo:hi] = ramp
        push = np.float32(shift) * near * (along[:, None] if axis == 0 else along[None, :])
        dmg[name][...] -= push
        dmg.boxes.append(_bbox(push != 0, loom.shape))
        return
    dmg["no_warp" if axis == 0 else "no_weft"][band] = True
    dmg["weft_gain" if axis == 0 else "warp_gain"][band] *= np.float32(rng.uniform(0.55, 0.75))
    # the loose end: a thin curled bundle of fibres from one cut, catching the light
    end = hi if rng.random() < 0.5 else lo
    across = band[lo:hi].any(0) if axis == 0 else band[:, lo:hi].any(1)
    centre = float(np.nonzero(across)[0].mean())
    pts = [np.array([end, centre] if axis == 0 else [centre, end], np.float64)]
    angle = rng.uniform(-1.1, 1.1) + (0 if end == hi else np.pi)
    bend, step = rng.uniform(-0.3, 0.3), rng.uniform(5, 14) / 6
    for k in range(1, 7):
        a = angle + bend * k
        along, aside = np.cos(a), np.sin(a)
        pts.append(pts[-1] + step * np.array([along, aside] if axis == 0 else [aside, along]))
    width, opacity = rng.uniform(1.0, 1.8), np.float32(rng.uniform(0.7, 1.0))
    alpha = _polyline_alpha(loom.shape, np.array(pts), width) * opacity
    dmg.layers.append((alpha, ref[0] + rng.uniform(1.5, 2.5) * ref[1]))
    dmg.boxes.append(_bbox(band | (alpha > 0), loom.shape))


def _missing_yarn(rng, loom: _Loom, dmg: _Damage, ref) -> None:
    """One yarn absent over a long stretch: the crossing yarns sag into the channel it leaves
    (a dark line) or bunch up and catch the light (a light one)."""
    h, w = loom.shape
    axis, y, x = _yarn_at(rng, loom)
    size = (h, w)[axis]
    length = min(size, int(rng.uniform(0.3, 1.0) * h) if axis == 0 else int(rng.uniform(60, 600)))
    lo = int(rng.integers(0, size - length + 1))
    band = _yarn_band(loom, axis, y, x, lo, lo + length)
    dmg["no_warp" if axis == 0 else "no_weft"][band] = True
    gain = rng.uniform(0.5, 0.7) if rng.random() < 0.7 else rng.uniform(1.3, 1.5)
    dmg["weft_gain" if axis == 0 else "warp_gain"][band] *= np.float32(gain)
    dmg.boxes.append(_bbox(band, loom.shape))


def _thick_bar(rng, loom: _Loom, dmg: _Damage, ref) -> None:
    """One to three thicker, denser yarns across the whole width or height."""
    h, w = loom.shape
    axis = int(rng.integers(2))
    coord = np.floor(loom.u if axis == 0 else loom.v)
    first = coord[rng.integers(h), rng.integers(w)]
    band = (coord >= first) & (coord < first + rng.integers(1, 4))
    name = ("warp", "weft")[axis]
    dmg[f"{name}_width"][band] *= np.float32(rng.uniform(1.3, 1.6))
    gain = rng.uniform(1.3, 1.5) if rng.random() < 0.6 else rng.uniform(0.55, 0.7)
    dmg[f"{name}_gain"][band] *= np.float32(gain)
    dmg.boxes.append(_bbox(band, loom.shape))


def _hole(rng, loom: _Loom, dmg: _Damage, ref) -> None:
    """A small hole with a ragged edge, dark (or bright where light shines through), the
    yarns around it pushed aside into a raised rim."""
    radius = rng.uniform(2.0, 7.0)
    cy, cx = _spot(rng, loom, radius + 2)
    reach = 3.5 * radius + 4
    win = _box(cy - reach, cy + reach, cx - reach, cx + reach, loom.shape)
    yy, xx = np.mgrid[win].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    r = np.hypot(dy, dx) + np.float32(1e-3)
    theta = np.arctan2(dy, dx)
    ragged = 1 + sum(rng.uniform(0, 0.15) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    rr = r / (radius * ragged)
    # just outside the hole a pixel shows the yarn that used to lie nearer its centre
    push = 0.7 * radius * np.exp(-2.5 * np.maximum(rr - 1, 0)) * (rr > 0.5)
    dmg["du"][win] -= push * dx / r / loom.fabric.period
    dmg["dv"][win] -= push * dy / r / loom.fabric.weft_period
    rim = 1 + 0.2 * np.exp(-(((rr - 1.3) / 0.35) ** 2))
    dmg["warp_gain"][win] *= rim
    dmg["weft_gain"][win] *= rim
    core = np.zeros(loom.shape, np.float32)
    core[win] = _smooth_step(rr, 0.4)
    dark = rng.random() < 0.75
    value = ref[0] + (-rng.uniform(2.2, 3.0) if dark else rng.uniform(3.0, 4.0)) * ref[1]
    dmg.layers.append((core, max(value, 0.02) * loom.warp_fibres * loom.weft_fibres))
    dmg.boxes.append(win)


def _stain(rng, loom: _Loom, dmg: _Damage, ref) -> None:
    """A smooth, low-contrast blob (oil, dirt, bleach) with a soft, irregular tide line."""
    size = rng.uniform(6, 26)
    cy, cx = _spot(rng, loom, size)
    win = _box(cy - 2.5 * size, cy + 2.5 * size, cx - 2.5 * size, cx + 2.5 * size, loom.shape)
    yy, xx = np.mgrid[win].astype(np.float32)
    blob = np.zeros(yy.shape, np.float32)
    for _ in range(int(rng.integers(2, 5))):
        oy, ox = rng.normal(0, size * 0.4, 2)
        sy, sx = size * rng.uniform(0.4, 0.9, 2)
        blob = np.maximum(blob, np.exp(-0.5 * (((yy - cy - oy) / sy) ** 2 + ((xx - cx - ox) / sx) ** 2)))
    # a stain soaks in evenly and ends in a fairly sharp tide line, not a Gaussian tail
    wet = _smooth_step((0.7 - blob) / 0.35, 0.9)
    strength = rng.uniform(0.15, 0.3) if rng.random() < 0.7 else -rng.uniform(0.15, 0.25)
    factor = np.ones(loom.shape, np.float32)
    factor[win] = 1 - np.float32(strength) * wet
    dmg.layers.append((None, factor))
    dmg.boxes.append(win)


def _knot(rng, loom: _Loom, dmg: _Damage, ref) -> None:
    """A knot or slub: a small bright lump on one yarn, longer along it, casting a shadow."""
    axis, y, x = _yarn_at(rng, loom)
    # centred on the yarn under the picked pixel
    if axis == 0:
        x = x + (np.floor(loom.u[y, x]) + 0.5 - loom.u[y, x]) * loom.fabric.period
    else:
        y = y + (np.floor(loom.v[y, x]) + 0.5 - loom.v[y, x]) * loom.fabric.weft_period
    length, across = rng.uniform(3.5, 9.0), rng.uniform(1.8, 3.2)
    ry, rx = (length, across) if axis == 0 else (across, length)
    win = _box(y - length - 4, y + length + 4, x - length - 4, x + length + 4, loom.shape)
    yy, xx = np.mgrid[win].astype(np.float32)

    def lump(oy, ox):
        a = np.zeros(loom.shape, np.float32)
        a[win] = _smooth_step(np.hypot((yy - y - oy) / ry, (xx - x - ox) / rx), 0.5)
        return a

    fibres = loom.warp_fibres if axis == 0 else loom.weft_fibres
    bright = np.float32(ref[0] + rng.uniform(2.5, 3.5) * ref[1])
    dmg.layers.append((lump(1.5, 1.5) * np.float32(0.6), np.float32(ref[0] - 1.5 * ref[1])))  # its shadow
    dmg.layers.append((lump(0, 0), bright * fibres))
    dmg.boxes.append(win)


_DEFECTS = {
    "broken_yarn": _broken_yarn,
    "missing_yarn": _missing_yarn,
    "thick_bar": _thick_bar,
    "hole": _hole,
    "stain": _stain,
    "knot": _knot,
}


# ---------------------------------------------------------------------------------------------
# Images


def fabric_image(
    rng: np.random.Generator, fabric: Fabric, height: int, width: int, kinds: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (H, W) image of `fabric` with one defect per entry of `kinds`.

    Returns (image, clean, mask): uint8 images with and without the defects (same yarns, light
    and noise) and the bool mask of the pixels the defects changed by more than MASK_LEVEL.
    Every defect changes at least one pixel.
    """
    loom = _loom(rng, fabric, height, width)
    clean_tex = _weave(loom)
    mu, sd = float(clean_tex.mean()), float(clean_tex.std())
    loom.scale = fabric.contrast / sd
    loom.offset = fabric.level - loom.scale * mu
    clean = _gray(loom, clean_tex)
    dirty, mask = clean, np.zeros((height, width), bool)
    for _ in range(20):  # a defect drawn too faint to see is drawn again
        if not kinds:
            break
        dmg = _Damage(loom.shape)
        for kind in kinds:
            _DEFECTS[kind](rng, loom, dmg, (mu, sd))
        dirty = clean.copy()
        for rows, cols in dmg.boxes:
            # only the boxes change; render each with a margin so the blur there is exact
            out = _box(rows.start, rows.stop, cols.start, cols.stop, loom.shape, _REACH)
            ext = _box(out[0].start, out[0].stop, out[1].start, out[1].stop, loom.shape, _REACH)
            inner = (slice(out[0].start - ext[0].start, out[0].stop - ext[0].start),
                     slice(out[1].start - ext[1].start, out[1].stop - ext[1].start))
            dirty[out] = _gray(loom, _weave(loom, dmg, ext), ext)[inner]
        changed = np.abs(dirty - clean) > MASK_LEVEL
        # close the yarn-sized gaps inside a damaged area, as a person drawing the mask would
        mask = _morph(_morph(changed, 2, True), 2, False)
        if all(changed[box].any() for box in dmg.boxes):
            break

    def quantise(img):
        return np.clip(np.rint(img + loom.sensor), 0, 255).astype(np.uint8)

    return quantise(dirty), quantise(clean), mask


def generate(
    seed: int,
    n_normal_images: int,
    n_defect_images: int,
    height: int,
    width: int,
    weave: str = "twill",
    defect_kinds=DEFECT_KINDS,
) -> list[SourceImage]:
    """Normal and defect images of one synthetic fabric, deterministic from `seed`.

    Each defect image carries 1-3 defects of `defect_kinds`, dealt in shuffled rounds so that
    every kind appears once there are at least as many defects as kinds; its path names them.
    """
    kinds = tuple(defect_kinds)
    if seed < 0:
        raise ConfigError(f"dataset.seed={seed} must be >= 0")
    if weave not in WEAVES:
        raise ConfigError(f"dataset.weave={weave!r} is not known; choose one of {list(WEAVES)}")
    if not kinds or set(kinds) - set(DEFECT_KINDS):
        raise ConfigError(
            f"dataset.defect_kinds={list(kinds)} must be a non-empty subset of {list(DEFECT_KINDS)}"
        )
    if min(height, width) < 32:
        raise ConfigError(
            f"dataset.height x dataset.width must be at least 32 x 32, got {height} x {width}"
        )
    if n_normal_images < 0 or n_defect_images < 0:
        raise ConfigError(
            f"dataset.n_normal_images={n_normal_images} and "
            f"dataset.n_defect_images={n_defect_images} must be >= 0"
        )

    fabric = Fabric.sample(np.random.default_rng(seed), weave)
    images = []
    # each image has its own stream, so image n is the same whatever the counts asked for
    for n in range(n_normal_images):
        image, _, _ = fabric_image(np.random.default_rng([seed, 0, n]), fabric, height, width)
        images.append(SourceImage(f"woven://{weave}/normal_{n:03d}", image, "normal", None, weave))
    deck, shuffler = [], np.random.default_rng([seed, 2])
    for n in range(n_defect_images):
        rng = np.random.default_rng([seed, 1, n])
        count = int(rng.integers(1, 4))
        while len(deck) < count:
            deck += [str(k) for k in shuffler.permutation(kinds)]
        chosen, deck = tuple(deck[:count]), deck[count:]
        image, _, mask = fabric_image(rng, fabric, height, width, chosen)
        path = f"woven://{weave}/defect_{n:03d}_{'+'.join(chosen)}"
        images.append(SourceImage(path, image, "defect", mask, weave))
    return images


UNSEEN = 4  # clean images of the fabric beyond those a run trains on: for an evaluation and `rdcae.data images`


def load(dataset_cfg, training: bool = True) -> list[SourceImage]:
    """The `woven` adapter: `generate` from the keys of the `dataset` config node
    (seed, weave, n_normal_images, n_defect_images, height, width; optional defect_kinds).
    `training=False`, for an evaluation: the same images and UNSEEN further clean ones, which no run trains on
    (each image has its own random stream, so the first n_normal_images stay those a run trains on)."""
    kinds = dataset_cfg.get("defect_kinds", None) if hasattr(dataset_cfg, "get") else None
    return generate(
        seed=int(dataset_cfg.seed),
        n_normal_images=int(dataset_cfg.n_normal_images) + UNSEEN * (not training),
        n_defect_images=int(dataset_cfg.n_defect_images),
        height=int(dataset_cfg.height),
        width=int(dataset_cfg.width),
        weave=str(dataset_cfg.weave),
        defect_kinds=tuple(kinds) if kinds else DEFECT_KINDS,
    )
