"""Reading image and mask files into the arrays a `SourceImage` holds."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from rdcae.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _decode(path: str | Path) -> Image.Image:
    try:
        # Image.open only parses the header; decode now so a truncated file fails here,
        # naming the file, and not later inside the patch sampler. Leaving `with` closes the
        # file and keeps the decoded pixels.
        with Image.open(path) as img:
            img.load()
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, EOFError, ValueError) as err:
        raise DataError(
            f"{path}: cannot be read as an image ({err}). The file is damaged or not an image; "
            "copy or save it again, or remove it from its folder."
        ) from err
    return img


def _to_uint8(img: Image.Image, path: str | Path) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 from any common PIL mode."""
    if img.mode in ("L", "RGB"):
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode == "LA":
        return np.asarray(img.convert("L"))
    if img.mode.startswith("I"):
        # 16-bit gray (PNG, TIFF): keep the top byte's worth of range, 65535 -> 255.
        values = np.asarray(img).astype(np.float64)
        return np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
    if img.mode == "P":
        rgb = np.asarray(img.convert("RGB"))
        # Palette files are often gray images saved with a gray palette; keep those 1-channel.
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0]
        return rgb
    if img.mode == "F":
        raise DataError(f"{path}: floating-point images are not supported; save it as 8-bit PNG.")
    # RGBA, CMYK, YCbCr, ...: alpha carries no surface information, so it is dropped.
    return np.asarray(img.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """The image at `path` as (H, W, C) uint8, C = 1 for gray and 3 for colour."""
    img = _decode(path)
    array = _to_uint8(img, path)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """(N, C, P, P) patches to the requested channel count: gray replicated, or RGB to luminance."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if x.shape[1] == 3 and channels == 1:
        gray = np.tensordot(np.array([0.299, 0.587, 0.114]), x.astype(np.float32), axes=([0], [1]))
        return np.round(gray)[:, None].astype(np.uint8)
    raise ValueError(f"patches with {x.shape[1]} channels cannot become {channels}: images must be gray (1 channel) "
                     "or RGB (3)")


def looks_gray(x: np.ndarray, axis: int) -> bool:
    """Whether images or patches `x` with their channels along `axis` are gray: one channel, or three that
    differ by at most one gray level on average (gray saved as RGB, a JPEG's rounding)."""
    if x.shape[axis] == 1:
        return True
    channels = np.moveaxis(x, axis, 0).astype(np.int16)
    return all(float(np.abs(channels[c] - channels[c + 1]).mean()) <= 1.0 for c in range(len(channels) - 1))


def _mask_pixels(img: Image.Image) -> np.ndarray:
    # Binarise on the stored values: a 16-bit mask with value 1 is a defect pixel, and
    # scaling it to 8 bits first would erase it; anti-aliased edges (1..254) count too.
    if img.mode in ("P", "RGBA", "LA", "CMYK", "YCbCr"):
        img = img.convert("RGB" if img.mode != "LA" else "L")
    values = np.asarray(img)
    return values.any(axis=2) if values.ndim == 3 else values > 0


def read_mask(
    paths: Sequence[str | Path], shape: Sequence[int], image_path: str | Path | None = None
) -> np.ndarray:
    """Union of the mask files in `paths` as an (H, W) bool array, True on defect pixels.

    shape: the image's (H, W) (extra trailing entries are ignored); every mask must match it.
    image_path: named in the error message when a mask's size differs.
    """
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=bool)
    for path in paths:
        pixels = _mask_pixels(_decode(path))
        if pixels.shape != mask.shape:
            image = image_path if image_path is not None else "its image"
            raise DataError(
                f"mask {path} is {pixels.shape[1]}x{pixels.shape[0]} but {image} is "
                f"{width}x{height} (width x height); a mask must have the size of its image."
            )
        mask |= pixels
    return mask


def unify_channels(sources: list, where: str | Path) -> list:
    """Replicate gray images to 3 channels when `sources` (SourceImages) mix gray and RGB."""
    gray = [s for s in sources if s.image.shape[2] == 1]
    if gray and len(gray) < len(sources):
        # One network input shape per dataset; gray -> RGB loses nothing, RGB -> gray would.
        log.info(
            "%s: %d of %d images are gray, the rest RGB; converting the gray ones to 3 channels",
            where, len(gray), len(sources),
        )
        for s in gray:
            s.image = np.repeat(s.image, 3, axis=2)
    return sources


def portable(stem: str) -> str:
    """`stem` with every character but letters, digits, `.`, `-` and `_` as `_`: names Windows shares, scp
    and shells take as they are (a dataset's `woven:` or a defect's `knot+bar` would not be)."""
    return re.sub(r"[^\w.\-]", "_", stem)


def unique(names: list[str]) -> list[str]:
    """`names` with a repeated one numbered from its second time on (`000`, `000_2`), so that no file written
    under them overwrites another."""
    taken: set[str] = set()
    out = []
    for name in names:
        new, k = name, 1
        while new in taken:
            k += 1
            new = f"{name}_{k}"
        taken.add(new)
        out.append(new)
    return out


# where a run keeps the fingerprints of the images it trained or calibrated on (its patches' stats, its model
# file's config), so that an evaluation anywhere leaves those images out
SEEN = "seen_images"


def fingerprint(image: np.ndarray) -> str:
    """A short digest of an image's pixels, the same for the image as a dataset reads it and as written to
    and read back from a PNG (gray whether stored with one channel or three equal ones)."""
    a = np.asarray(image)
    if a.ndim == 3 and (a.shape[2] == 1 or (a.shape[2] == 3 and (a == a[:, :, :1]).all())):
        a = a[:, :, 0]
    return hashlib.sha256(repr(a.shape).encode() + np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
