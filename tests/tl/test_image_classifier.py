import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import jointseg as jg
from jointseg._core.units import pixel_size_um
from jointseg.tl._image_classifier import ImageClassifierModel, depth_maps, nuclei_from_depth


def _two_touching_nuclei():
    nuc = np.zeros((20, 30), int)
    yy, xx = np.indices(nuc.shape)
    nuc[(yy - 10) ** 2 + (xx - 9) ** 2 <= 36] = 1
    nuc[((yy - 10) ** 2 + (xx - 20) ** 2 <= 36) & (nuc == 0)] = 2
    return nuc


def test_depth_maps_peak_at_each_centre_and_dip_where_nuclei_touch():
    nuc = _two_touching_nuclei()
    depth = depth_maps(nuc)
    assert depth[nuc == 0].max() == 0
    for i in (1, 2):
        assert depth[nuc == i].max() == pytest.approx(1.0)
    touching = (nuc[:, :-1] > 0) & (nuc[:, 1:] > 0) & (nuc[:, :-1] != nuc[:, 1:])
    assert touching.any() and depth[:, :-1][touching].max() == 0  # the shared edge is an edge of both
    np.testing.assert_allclose(depth_maps(np.rot90(nuc)), np.rot90(depth), atol=1e-6)  # rotates with the image


def test_post_processing_splits_touching_nuclei_from_perfect_maps():
    nuc = _two_touching_nuclei()
    found = nuclei_from_depth((nuc > 0).astype(float), depth_maps(nuc), min_area=20)
    assert found.max() == 2
    assert jg.metrics.instance_scores(nuc, found)["mean_iou"] > 0.8
    merged = nuclei_from_depth((nuc > 0).astype(float), depth_maps((nuc > 0).astype(int)), min_area=20)
    assert merged.max() == 1  # one depth peak: one nucleus


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    sdata = jg.datasets.synthetic(shape=(256, 320), n_cells=45, seed=7)
    jg.pp.nuclei(sdata, image_key="morphology")
    jg.seg.expand_nuclei(sdata)
    obs = sdata["table"].obs
    obs["cell_type"] = pd.Categorical(
        np.where(obs["cell_id"] % 3 == 0, "Unknown", np.where(obs["cell_id"] % 2, "A", "B"))
    )
    model = jg.tl.train_image_classifier(sdata, region=(0, 256, 0, 192), steps=120, crop=96, widths=(8, 16, 32),
                                         progress=False, seed=0)  # fmt: skip
    return sdata, model


def test_detects_nuclei_on_a_held_out_region(trained):
    sdata, model = trained
    assert model.classes == ["background", "A", "B"]  # Unknown is not a class
    labels, frame = jg.tl.predict_image_classes(sdata, model, region=(0, 256, 192, 320), window=128, stride=96)
    truth = sdata["nuclei"].values[:, 192:]
    assert labels.shape == truth.shape
    scores = jg.metrics.instance_scores(truth, labels)
    assert scores["mean_iou"] > 0.5, scores
    assert set(frame["class"].cat.categories) == {"A", "B"} and len(frame) == len(np.unique(labels[labels > 0]))
    assert (frame["x"] >= 192).all() and frame["probability"].between(0, 1).all()


def test_rare_classes_weigh_more(trained):
    sdata, model = trained
    weights = model.training_log["class_weights"]
    region = sdata["nuclei"].values[:, :192]
    obs = sdata["table"].obs.set_index("nucleus_id")["cell_type"].astype(str)
    pixels = {c: int(np.isin(region, obs.index[obs == c]).sum()) for c in ("A", "B")}
    rare, common = sorted(pixels, key=pixels.get)
    assert weights[rare] >= weights[common] > 0
    assert weights["background"] < weights[common]  # background pixels are the most frequent
    np.testing.assert_allclose(weights[rare] / weights[common], pixels[common] / pixels[rare], rtol=1e-6)


def test_save_load_gives_the_same_predictions(trained, tmp_path):
    _, model = trained
    model.save(tmp_path / "m.pt")
    again = ImageClassifierModel.load(tmp_path / "m.pt")
    x = np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), again.predict(x), atol=1e-6)
    assert again.classes == model.classes


def test_needs_cell_types_linked_to_nuclei_and_a_valid_stretch(trained):
    sdata, _ = trained
    with pytest.raises(KeyError, match="pseudolabels"):
        jg.tl.train_image_classifier(sdata, key="nope", steps=1, progress=False)
    with pytest.raises(ValueError, match="stretch"):
        jg.tl.train_image_classifier(sdata, stretch=0.5, steps=1, progress=False)


def _at_pixel_size(sdata, factor: float, *, declared: float | None = None):
    """The slide's stain and nuclei on a grid ``factor`` times coarser (``< 1``: finer), with the
    matching scale, or ``declared`` times the slide's pixel size.
    """
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel, Labels2DModel
    from spatialdata.transformations import Scale

    px = pixel_size_um(sdata, "morphology")
    step = int(factor) if factor >= 1 else 1
    stain = np.asarray(sdata["morphology"].values, np.float32)[:, ::step, ::step]
    nuclei = np.asarray(sdata["nuclei"].values)[::step, ::step]
    if factor < 1:
        repeat = round(1 / factor)
        stain, nuclei = (a.repeat(repeat, -1).repeat(repeat, -2) for a in (stain, nuclei))
    scale = {"global": Scale([px * (declared or factor)] * 2, axes=("y", "x"))}
    return SpatialData(
        images={"morphology": Image2DModel.parse(stain, dims=("c", "y", "x"), transformations=scale)},
        labels={"nuclei": Labels2DModel.parse(nuclei, dims=("y", "x"), transformations=scale)},
    )


def test_an_image_of_another_pixel_size_is_segmented_at_the_model_scale(trained):
    sdata, model = trained
    assert model.pixel_size_um == pytest.approx(0.2125)
    coarse = _at_pixel_size(sdata, 2)
    labels, frame = jg.tl.predict_image_classes(coarse, model, window=128, stride=96, scale_by="pixel_size")
    truth = coarse["nuclei"].values
    assert labels.shape == truth.shape
    assert jg.metrics.instance_scores(labels, truth)["mean_iou"] > 0.5
    assert frame["x"].max() < truth.shape[1] and len(frame) == len(np.unique(labels[labels > 0]))
    # without the pixel size the model would see nuclei half as wide as it learnt, and find fewer of them
    unscaled = dataclasses.replace(model, pixel_size_um=None)
    blind, _ = jg.tl.predict_image_classes(coarse, unscaled, window=128, stride=96, scale_by="pixel_size")
    assert jg.metrics.instance_scores(labels, truth)["mean_iou"] > jg.metrics.instance_scores(blind, truth)["mean_iou"]


def test_nuclei_wider_than_in_training_are_resampled_to_their_width(trained):
    sdata, model = trained
    assert 10 < model.nucleus_width_px < 40  # synthetic nuclei: ~3-4 um at 0.2125 um/px
    wide = _at_pixel_size(sdata, 1 / 3, declared=1.0)  # nuclei 3 times as wide, at the same pixel size
    truth = wide["nuclei"].values
    by_width, _ = jg.tl.predict_image_classes(wide, model, window=128, stride=96)
    by_pixel_size, _ = jg.tl.predict_image_classes(wide, model, window=128, stride=96, scale_by="pixel_size")
    assert by_width.shape == truth.shape
    found = jg.metrics.instance_scores(by_width, truth)
    assert found["mean_iou"] > 0.5
    assert found["f1"] > jg.metrics.instance_scores(by_pixel_size, truth)["f1"]
    exact, _ = jg.tl.predict_image_classes(wide, model, window=128, stride=96, scale_by="nucleus_width")
    np.testing.assert_array_equal(exact, by_width)  # 3 times as wide: "auto" matches the width too
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel

    no_units = SpatialData(images={"morphology": Image2DModel.parse(wide["morphology"].values, dims=("c", "y", "x"))})
    unitless, _ = jg.tl.predict_image_classes(no_units, model, window=128, stride=96, scale_by="nucleus_width")
    np.testing.assert_array_equal(unitless, exact)  # matching widths needs no pixel size
    with pytest.raises(ValueError, match="scale_by"):
        jg.tl.predict_image_classes(wide, model, scale_by="microns")


def test_a_model_file_of_the_old_layout_is_refused(trained, tmp_path):
    _, model = trained
    model.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    blob["version"] = 1  # HoVer-Net h/v maps: another network output
    torch.save(blob, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="Train the model again"):
        ImageClassifierModel.load(tmp_path / "old.pt")
    assert ImageClassifierModel.load(tmp_path / "m.pt").nucleus_width_px == pytest.approx(model.nucleus_width_px)


def test_a_brighter_microscope_gives_the_same_nuclei(trained):
    sdata, model = trained
    same = _at_pixel_size(sdata, 1)
    bright = _at_pixel_size(sdata, 1)
    bright["morphology"].data = bright["morphology"].data * 3 + 100
    labels, _ = jg.tl.predict_image_classes(same, model, window=128, stride=96)
    again, _ = jg.tl.predict_image_classes(bright, model, window=128, stride=96)
    assert labels.max() > 0
    np.testing.assert_array_equal(labels, again)


def test_a_field_without_nuclei_is_resampled_by_pixel_size_with_a_warning(trained, caplog):
    sdata, model = trained
    blank = _at_pixel_size(sdata, 1)
    blank["morphology"].data = blank["morphology"].data * 0
    with caplog.at_level("WARNING", logger="jointseg"):
        labels, frame = jg.tl.predict_image_classes(blank, model, window=128, stride=96)
    assert "No nuclei stand out" in caplog.text
    assert labels.shape == blank["morphology"].shape[-2:] and len(frame) == len(np.unique(labels[labels > 0]))
