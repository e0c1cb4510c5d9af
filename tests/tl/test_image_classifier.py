import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import jointseg as jg
from jointseg._core.units import pixel_size_um
from jointseg.tl._image_classifier import ImageClassifierModel, hover_maps, nuclei_from_maps


def _two_touching_nuclei():
    nuc = np.zeros((20, 30), int)
    yy, xx = np.indices(nuc.shape)
    nuc[(yy - 10) ** 2 + (xx - 9) ** 2 <= 36] = 1
    nuc[((yy - 10) ** 2 + (xx - 20) ** 2 <= 36) & (nuc == 0)] = 2
    return nuc


def test_hover_maps_rotate_with_the_image():
    nuc = _two_touching_nuclei()
    maps = hover_maps(nuc)
    assert maps.min() == -1 and maps.max() == 1
    rotated = hover_maps(np.rot90(nuc))
    # training rotates (h, v) -> (v, -h) with the image; it must agree with maps of the rotated nuclei
    np.testing.assert_allclose(rotated[0], np.rot90(maps[1]), atol=1e-6)
    np.testing.assert_allclose(rotated[1], -np.rot90(maps[0]), atol=1e-6)


def test_post_processing_splits_touching_nuclei_from_perfect_maps():
    nuc = _two_touching_nuclei()
    found = nuclei_from_maps((nuc > 0).astype(float), hover_maps(nuc), min_area=20)
    assert found.max() == 2
    assert jg.metrics.instance_scores(nuc, found)["mean_iou"] > 0.8


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


def test_needs_cell_types_linked_to_nuclei(trained):
    sdata, _ = trained
    with pytest.raises(KeyError, match="pseudolabels"):
        jg.tl.train_image_classifier(sdata, key="nope", steps=1, progress=False)


def _at_pixel_size(sdata, factor: int):
    """The slide's stain and nuclei on a grid ``factor`` times coarser, with the matching scale."""
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel, Labels2DModel
    from spatialdata.transformations import Scale

    px = pixel_size_um(sdata, "morphology")
    stain = np.asarray(sdata["morphology"].values, np.float32)[:, ::factor, ::factor]
    nuclei = np.asarray(sdata["nuclei"].values)[::factor, ::factor]
    scale = {"global": Scale([px * factor, px * factor], axes=("y", "x"))}
    return SpatialData(
        images={"morphology": Image2DModel.parse(stain, dims=("c", "y", "x"), transformations=scale)},
        labels={"nuclei": Labels2DModel.parse(nuclei, dims=("y", "x"), transformations=scale)},
    )


def test_an_image_of_another_pixel_size_is_segmented_at_the_model_scale(trained):
    sdata, model = trained
    assert model.pixel_size_um == pytest.approx(0.2125)
    coarse = _at_pixel_size(sdata, 2)
    labels, frame = jg.tl.predict_image_classes(coarse, model, window=128, stride=96)
    truth = coarse["nuclei"].values
    assert labels.shape == truth.shape
    assert jg.metrics.instance_scores(labels, truth)["mean_iou"] > 0.5
    assert frame["x"].max() < truth.shape[1] and len(frame) == len(np.unique(labels[labels > 0]))
    # without the pixel size the model would see nuclei half as wide as it learnt, and find fewer of them
    unscaled = dataclasses.replace(model, pixel_size_um=None)
    blind, _ = jg.tl.predict_image_classes(coarse, unscaled, window=128, stride=96)
    assert jg.metrics.instance_scores(labels, truth)["mean_iou"] > jg.metrics.instance_scores(blind, truth)["mean_iou"]


def test_a_model_file_without_a_pixel_size_still_loads(trained, tmp_path):
    _, model = trained
    model.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    del blob["pixel_size_um"]  # written before the pixel size was recorded
    torch.save(blob, tmp_path / "old.pt")
    assert ImageClassifierModel.load(tmp_path / "old.pt").pixel_size_um is None
    assert ImageClassifierModel.load(tmp_path / "m.pt").pixel_size_um == pytest.approx(0.2125)


def test_a_brighter_microscope_gives_the_same_nuclei(trained):
    sdata, model = trained
    same = _at_pixel_size(sdata, 1)
    bright = _at_pixel_size(sdata, 1)
    bright["morphology"].data = bright["morphology"].data * 3 + 100
    labels, _ = jg.tl.predict_image_classes(same, model, window=128, stride=96)
    again, _ = jg.tl.predict_image_classes(bright, model, window=128, stride=96)
    assert labels.max() > 0
    np.testing.assert_array_equal(labels, again)
