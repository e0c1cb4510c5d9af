import logging

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import feature, filters, measure, segmentation
from skimage.transform import rescale
from spatialdata import SpatialData
from spatialdata.models import Image2DModel
from spatialdata.transformations import Scale, get_transformation

import jointseg as jg
from jointseg._core.nucleus_scale import REFERENCE_NUCLEUS_WIDTH_UM
from jointseg.pp._nuclei import NucleiParams


def _otsu_watershed(image):
    """The floor to beat: Otsu threshold + distance-transform watershed."""
    smooth = filters.gaussian(image.astype(float), 1)
    fg = smooth > filters.threshold_otsu(smooth)
    dist = ndi.distance_transform_edt(fg)
    peaks = feature.peak_local_max(dist, min_distance=7, labels=measure.label(fg))
    markers = np.zeros(dist.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-dist, markers, mask=fg)


@pytest.mark.parametrize("seed", [0, 1])
def test_beats_otsu_watershed_on_touching_uneven_noisy_nuclei(seed):
    sdata = jg.datasets.synthetic(shape=(512, 512), n_cells=80, seed=seed, brightness_gradient=0.6, noise_sd=0.03)
    jg.pp.nuclei(sdata, image_key="morphology")
    truth = sdata["true_nuclei"].values
    ours = jg.metrics.instance_scores(sdata["nuclei"].values, truth)
    floor = jg.metrics.instance_scores(_otsu_watershed(sdata["morphology"].values[0]), truth)
    assert ours["f1"] >= 0.97
    assert ours["f1"] > floor["f1"]


def test_tiled_equals_single_block(synth):
    jg.pp.nuclei(synth, image_key="morphology", block_size=4096, key_added="whole")
    jg.pp.nuclei(synth, image_key="morphology", block_size=96, key_added="tiled")
    whole, tiled = synth["whole"].values, synth["tiled"].values
    assert whole.max() == tiled.max() > 15
    assert jg.metrics.instance_scores(tiled, whole)["mean_iou"] >= 0.99


def test_output_element(synth):
    jg.pp.nuclei(synth, image_key="morphology")
    labels = synth["nuclei"]
    assert labels.dims == ("y", "x") and labels.dtype == np.uint32
    assert (
        get_transformation(labels, get_all=True).keys() == get_transformation(synth["morphology"], get_all=True).keys()
    )
    ids = np.unique(labels.values)
    np.testing.assert_array_equal(ids, np.arange(ids.max() + 1))  # 0..N, consecutive


def test_refuses_overwrite_and_unknown_keys(synth):
    jg.pp.nuclei(synth, image_key="morphology")
    with pytest.raises(ValueError, match="already exists"):
        jg.pp.nuclei(synth, image_key="morphology")
    jg.pp.nuclei(synth, image_key="morphology", overwrite=True)
    with pytest.raises(KeyError, match="available images: \\['morphology'\\]"):
        jg.pp.nuclei(synth, image_key="dapi")


def test_copy_leaves_input_untouched(synth):
    out = jg.pp.nuclei(synth, image_key="morphology", copy=True)
    assert "nuclei" in out.labels and "nuclei" not in synth.labels


def test_channel_by_name(synth):
    with pytest.raises(KeyError, match="channels: \\['DAPI'\\]"):
        jg.pp.nuclei(synth, image_key="morphology", channel="PolyT")
    jg.pp.nuclei(synth, image_key="morphology", channel="DAPI")
    assert synth["nuclei"].values.max() > 0


def test_blank_image_gives_no_nuclei(synth):
    synth["morphology"].data[:] = 100
    jg.pp.nuclei(synth, image_key="morphology")
    assert synth["nuclei"].values.max() == 0


@pytest.mark.parametrize("zoom", [0.5, 1.0, 2.0])
def test_an_image_without_units_gives_the_same_nuclei_at_any_zoom(zoom, caplog):
    """No pixel size anywhere: it is estimated from the nuclei, so a rescaled image gives the same nuclei."""
    truth = jg.datasets.synthetic(shape=(768, 768), n_cells=70, seed=4, nucleus_radius_px=(14, 24),
                                  min_centre_distance_px=34, cell_expansion_px=(10, 30))  # fmt: skip
    image = rescale(truth["morphology"].values[0].astype(np.float32), zoom, order=1, preserve_range=True)
    true_nuclei = rescale(truth["true_nuclei"].values, zoom, order=0, preserve_range=True, anti_aliasing=False)
    sdata = SpatialData(images={"dapi": Image2DModel.parse(image[np.newaxis].astype(np.uint16), dims=("c", "y", "x"))})
    with caplog.at_level(logging.WARNING, logger="jointseg"):
        jg.pp.nuclei(sdata)
    assert "estimated" in caplog.text
    # The estimated pixel size follows the zoom (the nuclei are ~7 um wide at 0.2125 um/px).
    assert jg.pp.microns_per_unit(sdata) * zoom == pytest.approx(0.2125 * 5.7 / 7.3, rel=0.15)
    assert jg.metrics.instance_scores(sdata["nuclei"].values, true_nuclei.astype(np.int32))["f1"] >= 0.85


def test_wide_nuclei_scale_the_filters():
    """Nuclei 4x wider than usual (cultured cells) at a known pixel size: filters follow, nuclei are not split."""
    sdata = jg.datasets.synthetic(shape=(768, 768), n_cells=25, seed=5, nucleus_radius_px=(40, 60),
                                  min_centre_distance_px=110)  # fmt: skip
    jg.pp.nuclei(sdata, image_key="morphology")
    params = sdata["nuclei"].attrs["jointseg"]
    assert params["nucleus_width_um"] > 2 * REFERENCE_NUCLEUS_WIDTH_UM
    assert params["min_distance"] > 2 * NucleiParams().min_distance
    assert jg.metrics.instance_scores(sdata["nuclei"].values, sdata["true_nuclei"].values)["f1"] >= 0.9


@pytest.mark.parametrize("pixel_size", [0.2125, 0.5])
def test_stained_cytoplasm_is_not_taken_for_nuclei(pixel_size):
    # Cultured cells: 16-22 um nuclei in a faintly stained cytoplasm whose edges pass the local
    # threshold. Without drop_faint_objects: F1 0.645 / 0.88 here (0.2125 / 0.5 um/px), with it
    # 0.936 / 1.0 (the misses: crescents of cells whose nucleus lies outside the image).
    size = int(round(200 / pixel_size))
    sdata = jg.datasets.synthetic(regime="cultured", shape=(size, size), n_cells=1000, pixel_size=pixel_size, seed=0)
    jg.pp.nuclei(sdata, image_key="morphology")
    assert jg.metrics.instance_scores(sdata["nuclei"].values, sdata["true_nuclei"].values)["f1"] >= 0.9
    assert sdata["nuclei"].attrs["jointseg"]["nucleus_width_um"] > 14  # the crescents no longer narrow the measure


def test_cytoplasm_of_elongated_cells_is_not_taken_for_nuclei():
    # Stromal cells at 0.1 um/px: the stained cytoplasm of long cells reaches several nucleus widths
    # from the nucleus, and the fine pixels leave little noise to reject it. With the faint test
    # limited to objects within 2 nucleus widths and no plateau test: F1 0.65 (150 um, seed 0).
    size = int(round(100 / 0.1))
    sdata = jg.datasets.synthetic(regime="stroma", shape=(size, size), n_cells=1000, pixel_size=0.1, seed=0)
    jg.pp.nuclei(sdata, image_key="morphology")
    assert jg.metrics.instance_scores(sdata["nuclei"].values, sdata["true_nuclei"].values)["f1"] >= 0.9


def test_a_dim_nucleus_beside_a_bright_one_is_kept():
    """A nucleus 8x dimmer than its neighbour survives the faint test when background separates them,
    and is dropped as stained cytoplasm when a plateau of stain joins it to the bright one."""
    yy, xx = np.mgrid[:200, :300]
    image = np.full((200, 300), 50.0)
    image[(yy - 100) ** 2 + (xx - 80) ** 2 <= 14**2] = 4000.0
    dim = (yy - 100) ** 2 + (xx - 170) ** 2 <= 12**2
    image[dim] = 550.0
    rng = np.random.default_rng(0)
    noisy = image + rng.normal(0, 10, image.shape)
    jg.pp.nuclei(sdata := _image_sdata(noisy), image_key="image", nucleus_width_um=5.7)
    assert int(sdata["nuclei"].max()) == 2
    joined = noisy.copy()
    joined[88:112, 80:170] = np.maximum(joined[88:112, 80:170], 520.0)  # cytoplasm from the bright nucleus
    jg.pp.nuclei(sdata := _image_sdata(joined), image_key="image", nucleus_width_um=5.7)
    assert int(sdata["nuclei"].max()) == 1


def _image_sdata(image: np.ndarray) -> SpatialData:
    """A SpatialData holding ``image`` at 0.2125 um/px (units in ``global`` are microns)."""
    scale = Scale([0.2125, 0.2125], axes=("y", "x"))
    return SpatialData(images={"image": Image2DModel.parse(image[None].astype(np.float32), dims=("c", "y", "x"),
                                                          transformations={"global": scale})})  # fmt: skip
