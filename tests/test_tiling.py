"""One tiling for every use: the window grid, cropping, stitching back, and the positions kept with the test tiles."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compose_config

from rdcae.data.patches import build_patches
from rdcae.data.sources import load_sources
from rdcae.data.tiling import crop, grid, stitch


def test_grid_tiles_from_the_origin_row_by_row_and_drops_partial_windows():
    yx = grid(70, 100, 32)
    assert yx.tolist() == [[0, 0], [0, 32], [0, 64], [32, 0], [32, 32], [32, 64]]
    assert len(grid(70, 100, 32, stride=16)) == 3 * 5  # y in 0, 16, 32; x in 0, 16, 32, 48, 64


def test_crop_cuts_the_windows_at_their_corners():
    image = np.arange(6 * 8 * 2).reshape(6, 8, 2)
    windows = crop(image, np.array([[0, 0], [2, 4]]), 3)
    assert windows.shape == (2, 2, 3, 3)
    assert np.array_equal(windows[1, 0], image[2:5, 4:7, 0]) and np.array_equal(windows[1, 1], image[2:5, 4:7, 1])


def test_stitch_puts_values_back_and_averages_where_windows_overlap():
    yx = grid(4, 6, 4, stride=2)  # corners (0, 0) and (0, 2): columns 2-3 are covered twice
    flat = stitch(np.array([1.0, 3.0]), yx, (5, 6), 4)
    assert flat[0].tolist() == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    assert np.isnan(flat[4]).all()  # no window reaches the last row
    per_pixel = np.stack([np.zeros((4, 4)), np.ones((4, 4))])
    assert stitch(per_pixel, yx, (4, 6), 4)[2].tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]


def test_a_defect_tile_is_the_crop_of_its_image_at_its_kept_position():
    cfg = compose_config(["dataset.n_normal_images=1", "dataset.n_defect_images=2", "dataset.width=256",
                          "dataset.height=128", "dataset.n_normal=50", "cache_dir="])
    patches = build_patches(cfg)
    defects = [s for s in load_sources(cfg.dataset) if s.role == "defect"]
    assert len(patches.test_defect) > 0 and (patches.test_defect_position % cfg.patch_size == 0).all()
    for tile, mask, source, yx in zip(patches.test_defect, patches.test_defect_mask, patches.test_defect_source,
                                      patches.test_defect_position):
        image = defects[source]
        assert np.array_equal(crop(image.image, yx[None], cfg.patch_size)[0], tile)
        assert np.array_equal(crop(image.mask[..., None], yx[None], cfg.patch_size)[0, 0], mask) and mask.any()


@pytest.mark.parametrize("stride", [None, 8])
def test_stitching_a_grid_of_constant_windows_gives_back_a_constant_map(stride):
    yx = grid(64, 96, 32, stride)
    assert np.allclose(stitch(np.full(len(yx), 2.5), yx, (64, 96), 32), 2.5)


def test_inside_at_says_what_windows_inside_says_at_the_corners_for_rectangles_and_other_regions():
    from rdcae.data.tiling import inside_at, windows_inside

    rng = np.random.default_rng(0)
    yx = grid(100, 300, 32, 8, cover=True)
    rectangle = np.zeros((100, 300), bool)
    rectangle[5:90, 40:263] = True
    holed = rectangle.copy()
    holed[50, 100] = False  # one pixel off: no longer a rectangle, the windows over it are not inside
    speckled = rng.random((100, 300)) > 0.001
    for allowed in (rectangle, holed, speckled, np.zeros((100, 300), bool), np.ones((100, 300), bool)):
        expected = windows_inside(allowed, 32)[yx[:, 0], yx[:, 1]]
        assert (inside_at(allowed, yx, 32) == expected).all()
    assert inside_at(rectangle, yx, 32).sum() > inside_at(holed, yx, 32).sum() > 0


def test_stitching_window_values_by_their_maximum_at_once_gives_the_window_by_window_map():
    rng = np.random.default_rng(1)
    for _ in range(60):
        height, width, size = int(rng.integers(32, 200)), int(rng.integers(32, 300)), int(rng.choice([8, 16, 32]))
        yx = grid(height, width, size, int(rng.integers(1, size + 1)), cover=bool(rng.integers(2)))
        yx = yx[rng.random(len(yx)) > 0.3] if len(yx) > 1 else yx  # gaps, as windows off the fabric leave
        values = rng.normal(size=len(yx))
        per_pixel = np.broadcast_to(values[:, None, None], (len(yx), size, size))  # the window-by-window path
        expected = stitch(per_pixel, yx, (height, width), size, reduce="max")
        assert np.array_equal(stitch(values, yx, (height, width), size, reduce="max"), expected, equal_nan=True)
