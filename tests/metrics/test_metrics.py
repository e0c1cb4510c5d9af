import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import jointseg as jg


def test_instance_scores_exact():
    true = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 3, 3]])
    pred = np.array([[5, 5, 5, 0, 0, 6, 0, 0, 0, 0]])
    s = jg.metrics.instance_scores(pred, true)
    # IoU(1,5)=3/4 matches; IoU(2,6)=1/2 does not exceed 0.5; 3 unmatched
    assert s["n_true"] == 3 and s["n_pred"] == 2
    assert s["mean_iou"] == pytest.approx((0.75 + 0.5 + 0) / 3)
    assert s["precision"] == 0.5 and s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 * 1 / (2 + 1 + 2))
    assert s["ap"] == pytest.approx(1 / 4)


def test_identical_labels_score_one(segmented):
    lab = segmented["cell_labels"].values
    s = jg.metrics.instance_scores(lab, lab)
    assert s["mean_iou"] == s["f1"] == s["ap"] == 1.0


def test_match_instances_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="Shapes differ"):
        jg.metrics.match_instances(np.zeros((2, 2)), np.zeros((2, 3)))


def test_mecr_exact():
    x = sparse.csr_matrix(np.array([[1, 0], [1, 1], [0, 2], [0, 0]]))
    table = ad.AnnData(X=x, var=pd.DataFrame(index=["A", "B"]))
    table.layers["counts"] = x
    # both detected in 1 cell, either in 3
    assert jg.metrics.mecr(table, [("A", "B")]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="No mutually exclusive"):
        jg.metrics.mecr(table, [])


def test_exclusive_pairs_from_markers():
    m = pd.DataFrame(
        {
            "cell_type": ["T", "T", "Epi", "Epi", "B"],
            "gene": ["CD3E", "EPCAM", "EPCAM", "CD3E", "MS4A1"],
            "kind": ["positive", "negative", "positive", "negative", "positive"],
        }
    )
    assert jg.metrics.exclusive_marker_pairs(m) == [("CD3E", "EPCAM")]
    real = jg.metrics.exclusive_marker_pairs(jg.datasets.markers("breast"))
    assert len(real) > 5 and all(a < b for a, b in real)


def test_assignment_summary(segmented):
    s = jg.metrics.assignment_summary(segmented["table"])
    pts = segmented["transcripts"].compute()
    assert s["n_cells"] == segmented["table"].n_obs
    assert s["fraction_assigned"] == pytest.approx((pts["jg_cell_id"] > 0).mean())


def _hand_made_sdata():
    """One 10x10 px cell in a 40x40 image; transcripts: 5 inside, 2 at 2 px outside, 3 at 5 px, 4 far."""
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel, Labels2DModel, PointsModel

    labels = np.zeros((40, 40), np.int32)
    labels[10:20, 10:20] = 1
    xy = [(12, 12), (13, 15), (15, 15), (18, 11), (19, 19)]  # inside (x, y)
    xy += [(21, 15), (15, 21)]  # 2 px outside the right and bottom edges
    xy += [(24, 15), (15, 24), (5, 15)]  # 5 px outside
    xy += [(35, 35), (2, 35), (35, 2), (30, 30)]  # far
    df = pd.DataFrame({"x": [p[0] for p in xy], "y": [p[1] for p in xy], "gene": ["A"] * len(xy)})
    return SpatialData(
        images={"img": Image2DModel.parse(np.zeros((1, 40, 40)), dims=("c", "y", "x"))},
        labels={"cells": Labels2DModel.parse(labels, dims=("y", "x"))},
        points={"tx": PointsModel.parse(df, feature_key="gene")},
    )


def test_cell_calling_counts_the_ring_just_outside_cells():
    sdata = _hand_made_sdata()
    calling = jg.metrics.cell_calling(sdata, labels_key="cells", points_key="tx", deltas=(1, 3, 5, 7))
    assert calling[1] == 5  # no transcript in the 1 px ring: divided by max(0, 1)
    assert calling[3] == pytest.approx(5 / 2)
    assert calling[5] == pytest.approx(5 / 5)
    assert calling[7] == pytest.approx(5 / 5)


def test_shape_metrics_of_known_polygons():
    import geopandas as gpd
    from shapely.geometry import Polygon, box

    ell = Polygon([(0, 0), (10, 0), (10, 4), (4, 4), (4, 10), (0, 10)])
    m = jg.metrics.shape_metrics(gpd.GeoDataFrame(geometry=[box(0, 0, 10, 10), ell, box(0, 0, 40, 10)]))
    assert m["convexity"].iloc[0] == pytest.approx(1.0)
    hull = 10 + 10 + 10 + 10 - 12 + np.hypot(6, 6)  # L-shape's hull cuts the notch with a diagonal
    assert m["convexity"].iloc[1] == pytest.approx(hull / 40)
    assert m["elongation"].iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert m["elongation"].iloc[2] == pytest.approx(21.67 / 186.67, rel=0.02)


def test_segmentation_report_columns(segmented):
    pairs = [("T0_0", "T1_0"), ("T0_1", "T2_1")]
    row = jg.metrics.segmentation_report(segmented, pairs=pairs)
    assert row["n_cells"] == segmented["table"].n_obs
    assert 0 < row["fraction_assigned"] <= 1 and 0 <= row["mecr"] <= 1
    assert row["cell_calling_3"] > row["cell_calling_7"] > 0
    assert 0 < row["median_convexity"] <= 1 and 0 < row["median_elongation"] <= 1
    vendor_like = jg.metrics.segmentation_report(segmented, pairs=pairs, labels_key=None, shapes_key=None)
    assert "cell_calling_3" not in vendor_like and "median_convexity" not in vendor_like


def test_background_border_fraction_counts_each_cells_side_of_a_border():
    touching = np.zeros((5, 8), int)
    touching[1:4, 1:4], touching[1:4, 4:7] = 1, 2
    # each cell: 3 shared pixel pairs, 3 + 3 + 3 facing the background -> 18 / (18 + 2 * 3)
    assert jg.metrics.background_border_fraction(touching) == pytest.approx(18 / 24)
    apart = np.zeros((5, 9), int)
    apart[1:4, 1:4], apart[1:4, 5:8] = 1, 2
    assert jg.metrics.background_border_fraction(apart) == 1.0
    packed = np.repeat(np.repeat(np.arange(1, 5).reshape(2, 2), 3, axis=0), 3, axis=1)
    assert jg.metrics.background_border_fraction(packed) == 0.0
    assert np.isnan(jg.metrics.background_border_fraction(np.zeros((3, 3), int)))
