"""The picture of a detection: the image at its own size, the anomaly map tinted over it (from faint
yellow at 85 % of the threshold to red at the threshold and above), the defect regions outlined,
what was not inspected dimmed, and the verdict with a legend of the colours written in its corner; in a
strip below the image where every corner would hide a pixel above the threshold or of the ground truth, or
where the image is too small for it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rdcae.inference.image import Detection

YELLOW, RED, OUTLINE = np.array([255.0, 220.0, 0.0]), np.array([230.0, 20.0, 20.0]), (0, 255, 255)
NOTE = (255, 200, 90)  # the note's text: a caution, apart from the verdict's red or green
STRIP_WIDTH = 320  # the width a caption in a strip below the image wraps to (the picture widened to its text)
NOT_INSPECTED = (70, 70, 70)  # the legend's swatch for the dimmed part: mid-gray at the dimming's 0.55
TINT_FROM = 0.85  # of the threshold: normal weave mostly scores below, so the tint marks what is close
DIMMED = (np.arange(256) * 0.55).astype(np.uint8)  # a gray level outside the inspected part, dimmed


def overlay(image: np.ndarray, detection: Detection, mask: np.ndarray | None = None, note: str = "") -> Image.Image:
    """An RGB picture of `detection` on `image` ((H, W) or (H, W, C) uint8); `mask` (H, W) bool, the
    ground truth where known, is outlined in white; `note`, what rather than a defect may have flagged the
    image (rdcae.detect.image_note), is written under the verdict."""
    image = image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)
    rgb = image if image.ndim == 3 else image[:, :, None]
    rgb = rgb if rgb.shape[2] == 1 else rgb[:, :, :3]
    # not fabric, or no whole window fits: never scored, never reported; dimmed before the gray becomes RGB
    rgb = np.where(np.isnan(detection.anomaly_map)[:, :, None], DIMMED[rgb], rgb)
    pixels = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb
    with np.errstate(invalid="ignore"):
        ratio = detection.anomaly_map / detection.threshold  # 1 at the threshold; NaN where not inspected
        ys, xs = np.nonzero(ratio >= TINT_FROM)  # the tint, computed where there is one
    ratio = ratio[ys, xs]
    near = np.clip((ratio - TINT_FROM) / (1 - TINT_FROM), 0, 1)[:, None]  # 0 at TINT_FROM, 1 from the threshold up
    alpha = 0.15 + 0.3 * near  # faint while below the threshold, stronger above it, the weave still showing
    colour = YELLOW + (RED - YELLOW) * (ratio > 1)[:, None]
    tint = pixels[ys, xs].astype(np.float32) * (1 - alpha) + colour * alpha
    pixels[ys, xs] = tint.clip(0, 255).astype(np.uint8)
    if mask is not None and mask.any():
        pixels[mask & ~_eroded(mask)] = 255
    picture = Image.fromarray(pixels)
    draw = ImageDraw.Draw(picture)
    for r in detection.regions:
        draw.rectangle((r.x0 - 1, r.y0 - 1, r.x1, r.y1), outline=OUTLINE, width=2)
    truth = mask is not None and bool(mask.any())
    c = caption_layout(draw, picture.size, detection, truth, note=note)
    if (corner := caption_corner(c, detection, mask)) is not None:
        _caption(draw, c, corner, detection)
        return picture
    c = caption_layout(draw, picture.size, detection, truth, strip=True, note=note)
    framed = Image.new("RGB", (max(picture.width, c.width), picture.height + c.height))
    framed.paste(picture)
    _caption(ImageDraw.Draw(framed), c, (0, picture.height), detection)
    return framed


def _eroded(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def legend(d: Detection, truth: bool) -> list[tuple[str, tuple[int, int, int]]]:
    """The colours the picture uses, each with what it means."""
    items = [("above threshold", tuple(int(c) for c in RED)), ("near threshold", tuple(int(c) for c in YELLOW))]
    if d.regions:
        items.append(("defect region", OUTLINE))
    if truth:
        items.append(("ground truth", (255, 255, 255)))
    if np.isnan(d.anomaly_map).any():
        items.append(("not inspected", NOT_INSPECTED))
    return items


@dataclass
class Caption:
    """Where the verdict and the legend go: the verdict's lines, the legend's rows of (label, colour,
    width), the box's size, the font and its line height."""

    verdict: list[str]
    rows: list[list[tuple[str, tuple[int, int, int], int]]]
    width: int
    height: int
    font: ImageFont.ImageFont
    line: int
    offset: tuple[int, int]  # the font's left and top bearing, taken off where text is drawn
    noted: int = 0  # the verdict's lines; those after them, the note's


def caption_layout(draw: ImageDraw.ImageDraw, size: tuple[int, int], d: Detection, truth: bool = False,
                   strip: bool = False, note: str = "") -> Caption:
    """The verdict, wrapped to the image's width, then `note` (its lines after the verdict's: Caption.noted),
    and the legend in as many rows as it needs; no rows where verdict and legend together would cover more than
    half the image's height. `strip`: for a strip below the image, wrapped to STRIP_WIDTH where the image is
    narrower, the legend always there."""
    sign = ">" if d.verdict == "defect" else "<="  # Pillow's built-in font has no "≤"
    text = f"{d.verdict}: score {d.score:.3f} {sign} threshold {d.threshold:.3f}"
    if d.regions:
        text += f", {len(d.regions)} region{'s' * (len(d.regions) > 1)}, {d.defect_area} px"
    font = ImageFont.load_default(size=max(10, min(18, size[1] // 14, size[0] // 28)))
    left, top, _, bottom = draw.textbbox((0, 0), "Ag" + text, font=font)
    line, room = bottom - top, max(size[0], STRIP_WIDTH * strip) - 12

    def wrapped(text: str) -> list[str]:
        return [" ".join(words) for words in
                _wrapped(text.split(" "), lambda words: draw.textlength(" ".join(words), font=font), room)]

    verdict = wrapped(text)
    noted = len(verdict)
    verdict += [piece for part in note.split("; ") for piece in wrapped(part)] if note else []
    keys = [(label, colour, line + 4 + int(draw.textlength(label, font=font)) + 1)
            for label, colour in legend(d, truth)]

    def row_width(row):
        return sum(k[2] for k in row) + 12 * (len(row) - 1)

    rows = _wrapped(keys, row_width, room)
    h_text, h_keys = len(verdict) * (line + 4) + 6, len(rows) * (line + 6) + 2
    if h_text + h_keys > size[1] // 2 and not strip:
        rows, h_keys = [], 0
    widths = [draw.textlength(v, font=font) for v in verdict] + [row_width(row) for row in rows]
    return Caption(verdict, rows, int(max(widths)) + 12, h_text + h_keys, font, line, (left, top), noted)


def caption_corner(c: Caption, d: Detection, mask: np.ndarray | None) -> tuple[int, int] | None:
    """The corner of the image for the caption `c`: the one whose pixels score lowest, so that it hides no
    defect it can avoid; None where each corner would hide a pixel above the threshold or of the ground truth
    `mask`, or where the caption would cover more than a quarter of the image."""
    h, w = d.anomaly_map.shape
    if c.width * c.height > w * h / 4 or c.width > w or c.height > h:
        return None
    scores = np.fmax(d.anomaly_map, 0)  # NaN (not inspected) as 0; the corners compare maxima from 0 up
    corners = [(0, 0), (0, h - c.height), (w - c.width, 0), (w - c.width, h - c.height)]

    def highest(x: int, y: int) -> float:
        return float(scores[y:y + c.height, x:x + c.width].max(initial=0))

    def hides(x: int, y: int) -> bool:
        return highest(x, y) > d.threshold or (mask is not None and bool(mask[y:y + c.height, x:x + c.width].any()))

    free = [corner for corner in corners if not hides(*corner)]
    return min(free, key=lambda corner: highest(*corner)) if free else None


def _caption(draw: ImageDraw.ImageDraw, c: Caption, at: tuple[int, int], d: Detection) -> None:
    """The caption (caption_layout) drawn with its top left corner at `at`."""
    (x, y), w, h, line, (left, top) = at, c.width, c.height, c.line, c.offset
    draw.rectangle((x, y, x + w, y + h), fill=(0, 0, 0))
    colour = (255, 80, 80) if d.verdict == "defect" else (120, 255, 120)
    for i, words in enumerate(c.verdict):
        draw.text((x + 6 - left, y + 5 + i * (line + 4) - top), words, fill=colour if i < c.noted else NOTE,
                  font=c.font)
    keys_top = y + len(c.verdict) * (line + 4) + 7
    for r, row in enumerate(c.rows):
        kx, ky = x + 6, keys_top + r * (line + 6)
        for label, swatch, width in row:
            draw.rectangle((kx, ky, kx + line, ky + line), fill=swatch)
            draw.text((kx + line + 4 - left, ky - top), label, fill=(230, 230, 230), font=c.font)
            kx += width + 12


def _wrapped(items: list, width_of, room: float) -> list[list]:
    """`items` in rows, each as many as fit in `room` by `width_of(row)`; one alone when it fits nowhere."""
    rows: list[list] = [[]]
    for item in items:
        if rows[-1] and width_of(rows[-1] + [item]) > room:
            rows.append([])
        rows[-1].append(item)
    return rows
