import dask.array as da
import numpy as np
import pytest
from skimage.measure import label

from jointseg._core.tiling import _renumber, bins_to_pixels, relabel_sequential, window_weights
from jointseg.seg import BlockGrid, segment_blockwise, sliding_window_average


def _blobs(shape=(300, 340), n=40, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, bool)
    yy, xx = np.indices(shape)
    for cy, cx, r in zip(rng.uniform(0, shape[0], n), rng.uniform(0, shape[1], n), rng.uniform(4, 9, n), strict=True):
        img |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    return img


def _label(block):
    return label(block)


def test_grid_geometry():
    grid = BlockGrid(shape=(1000, 700), block_size=512, halo=32)
    assert grid.n_blocks == (2, 2)
    assert grid.chunks == ((512, 488), (512, 188))
    assert grid.block(0, 0).ext == (0, 544, 0, 544)
    assert len(list(grid)) == 4


@pytest.mark.parametrize("block_size", [64, 100, 1000])
def test_tiled_equals_whole_image(block_size):
    img = _blobs()
    whole = label(img)
    tiled = segment_blockwise(da.from_array(img, chunks=64), _label, block_size=block_size, halo=40).compute()
    # same partition of the foreground: a one-to-one correspondence of objects
    assert ((tiled > 0) == (whole > 0)).all()
    pairs = {(a, b) for a, b in zip(whole[whole > 0], tiled[tiled > 0], strict=True)}
    assert len(pairs) == len(np.unique(whole)) - 1 == len(np.unique(tiled)) - 1


@pytest.mark.parametrize("block_size", [64, 100])
def test_blocks_reading_their_own_windows_give_the_same_labels(block_size, tmp_path):
    """``read_windows`` (each block reads its window from a store on disk) changes nothing but memory."""
    img = _blobs()
    da.from_array(img, chunks=50).to_zarr(str(tmp_path / "img.zarr"))
    on_disk = da.from_zarr(str(tmp_path / "img.zarr"))
    held = segment_blockwise(on_disk, _label, block_size=block_size, halo=40).compute()
    read = segment_blockwise(on_disk, _label, block_size=block_size, halo=40, read_windows=True).compute()
    np.testing.assert_array_equal(read, held)
    assert len(np.unique(read)) - 1 == label(img).max()


def test_objects_on_block_corners_are_not_split_or_duplicated():
    img = np.zeros((128, 128), bool)
    img[56:72, 56:72] = True  # straddles the corner shared by four 64-px blocks
    tiled = segment_blockwise(da.from_array(img), _label, block_size=64, halo=24).compute()
    assert len(np.unique(tiled[tiled > 0])) == 1
    assert (tiled > 0).sum() == 256


def test_objects_wider_than_the_halo_are_reported_but_not_those_at_the_image_edge(caplog):
    img = np.zeros((130, 128), bool)
    img[124:, 10:20] = True  # on the image's bottom edge, 2 px below the core of the block that owns it
    tiled = segment_blockwise(da.from_array(img), _label, block_size=64, halo=24).compute()
    assert len(np.unique(tiled[tiled > 0])) == 1
    assert "reach the edge" not in caplog.text
    img[:, 100:104] = True  # a bar spanning all rows: longer than any block's window
    segment_blockwise(da.from_array(img), _label, block_size=64, halo=24).compute()
    assert "1 objects reach the edge of the block's halo" in caplog.text


def test_sliding_window_identity_is_exact():
    rng = np.random.default_rng(0)
    x = rng.random((2, 70, 90)).astype(np.float32)
    out = sliding_window_average(x, lambda b: b * 2, window=32, stride=24)
    np.testing.assert_allclose(out, 2 * x, rtol=1e-5)


def test_sliding_window_pads_small_inputs():
    x = np.ones((1, 10, 12), np.float32)
    out = sliding_window_average(x, lambda b: b[:, :1] + 1, window=16, stride=8)
    assert out.shape == (1, 10, 12)
    np.testing.assert_allclose(out, 2.0)


def test_window_weights_positive():
    w = window_weights(16)
    assert w.min() > 0 and w.max() == 1


def test_bins_to_pixels_repeats_each_bin_and_crops_to_the_image():
    binned = da.from_array(np.arange(12).reshape(3, 4), chunks=2)
    pixels = bins_to_pixels(binned, 3, (8, 11)).compute()
    assert pixels.shape == (8, 11)
    np.testing.assert_array_equal(pixels, np.arange(12).reshape(3, 4).repeat(3, 0).repeat(3, 1)[:8, :11])


def test_relabel_sequential_handles_ids_beyond_one_lookup_chunk():
    import spatialdata

    ids = np.array([[0, 40_000_000, 40_000_000], [7, 0, 3_000_000_000]], dtype=np.int64)
    out = relabel_sequential(da.from_array(ids, chunks=1)).compute()
    np.testing.assert_array_equal(out, [[0, 2, 2], [1, 0, 3]])
    assert out.dtype == np.uint32
    with pytest.raises((IndexError, ValueError)):  # why jointseg has its own: spatialdata's table spans chunks there
        spatialdata.relabel_sequential(da.from_array(ids, chunks=1)).compute()
    small = np.random.default_rng(0).integers(0, 50, (64, 64))
    np.testing.assert_array_equal(
        relabel_sequential(da.from_array(small, chunks=16)).compute(),
        spatialdata.relabel_sequential(da.from_array(small, chunks=16)).compute(),
    )


@pytest.mark.parametrize("largest", [5_000, 60_000_000])  # a lookup table, then a binary search
def test_renumbering_maps_ids_to_their_rank(largest):
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(np.arange(1, largest), 300, replace=False))
    block = np.where(rng.random((64, 64)) < 0.3, 0, rng.choice(ids, (64, 64)))
    out = _renumber(block, ids)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out[block == 0], 0)
    np.testing.assert_array_equal(out[block > 0], np.searchsorted(ids, block[block > 0]) + 1)


def test_fields_on_a_coarser_grid_do_not_depend_on_the_block():
    from jointseg._core.fields import input_region, predict_fields_on_region

    rng = np.random.default_rng(1)
    image = rng.random((1, 300, 260)).astype(np.float32)
    reads = []

    def read(region):
        reads.append(region)
        return image[:, region[0] : region[1], region[2] : region[3]]

    def blur(batch):  # a network with a receptive field: each window's mean plus the pixel
        return batch + batch.mean(axis=(2, 3), keepdims=True)

    kw = {"window": 32, "stride": 24, "factor": 2.35}
    whole = predict_fields_on_region((0, 300, 0, 260), (300, 260), read, blur, **kw)
    region = (100, 180, 37, 150)
    reads.clear()
    block = predict_fields_on_region(region, (300, 260), read, blur, **kw)
    np.testing.assert_allclose(block, whole[:, 100:180, 37:150], atol=1e-5)
    assert reads == [input_region(region, (300, 260), window=32, stride=24, factor=2.35)]
    # a constant image gives the constant field the network gives it on its own grid
    flat = predict_fields_on_region((0, 50, 0, 50), (300, 260), lambda r: np.ones((1, r[1] - r[0], r[3] - r[2])),
                                    lambda b: 2 * b, **kw)  # fmt: skip
    np.testing.assert_allclose(flat, 2.0, atol=1e-5)
