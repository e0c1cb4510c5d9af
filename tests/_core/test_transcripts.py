import numpy as np
import pytest
from spatialdata.models import PointsModel
from spatialdata.transformations import Affine, Identity, Scale, set_transformation

from jointseg._core.transcripts import build_transcript_index, points_to_pixel_matrix


def _pixel_points(sdata, px=0.2125):
    """The same transcripts with coordinates in pixels and an identity image transformation."""
    df = sdata["transcripts"].compute()
    df["x"], df["y"] = df["x"] / px, df["y"] / px
    pts = PointsModel.parse(df, coordinates={"x": "x", "y": "y"}, feature_key="feature_name",
                            transformations={"global": Identity()})  # fmt: skip
    return pts


def test_microns_and_pixels_give_same_index(synth):
    shape = synth["true_cells"].shape
    a = build_transcript_index(synth, "transcripts", "morphology", shape=shape, block_size=64)
    synth["pix"] = _pixel_points(synth)
    set_transformation(synth["morphology"], Identity(), to_coordinate_system="pixels")
    set_transformation(synth["pix"], Identity(), to_coordinate_system="pixels")
    b = build_transcript_index(synth, "pix", "morphology", shape=shape, block_size=64, coordinate_system="pixels")
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_allclose(a.x, b.x, atol=1e-3)
    np.testing.assert_array_equal(a.gene, b.gene)


def test_non_identity_affine_is_inverted(synth):
    # points expressed in a rotated + shifted frame, linked to "global" by the inverse affine
    rot = np.array([[0.0, -1.0, 100.0], [1.0, 0.0, -20.0], [0.0, 0.0, 1.0]])
    df = synth["transcripts"].compute()
    xy = np.c_[df["x"], df["y"], np.ones(len(df))] @ np.linalg.inv(rot).T
    df["x"], df["y"] = xy[:, 0], xy[:, 1]
    affine = Affine(rot, input_axes=("x", "y"), output_axes=("x", "y"))
    pts = PointsModel.parse(
        df, coordinates={"x": "x", "y": "y"}, feature_key="feature_name", transformations={"global": affine}
    )
    synth["rotated"] = pts
    m = points_to_pixel_matrix(synth, "rotated", "morphology")
    pix = xy @ m.T
    truth = synth["transcripts"].compute()
    np.testing.assert_allclose(pix[:, 0], truth["x"] / 0.2125, atol=1e-6)


def test_window_selects_by_rounded_pixel(synth):
    idx = build_transcript_index(synth, "transcripts", "morphology", shape=(256, 256), block_size=50)
    sel = idx.window(30, 130, 70, 171)
    ry, rx = np.rint(idx.y), np.rint(idx.x)
    expected = np.flatnonzero((ry >= 30) & (ry < 130) & (rx >= 70) & (rx < 171))
    np.testing.assert_array_equal(np.sort(sel), expected)


def test_missing_coordinate_system(synth):
    with pytest.raises(ValueError, match="no transformation to coordinate system 'elsewhere'"):
        points_to_pixel_matrix(synth, "transcripts", "morphology", coordinate_system="elsewhere")


def test_points_outside_image_raise(synth):
    set_transformation(synth["morphology"], Scale([0.2125, 0.2125], axes=("y", "x")), "global")
    df = synth["transcripts"].compute()
    df["x"] += 1e4
    synth["far"] = PointsModel.parse(df, coordinates={"x": "x", "y": "y"}, feature_key="feature_name")
    with pytest.raises(ValueError, match="do not overlap"):
        build_transcript_index(synth, "far", "morphology", shape=(256, 256))
