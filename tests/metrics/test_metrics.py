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
    assert s["fraction_assigned"] == pytest.approx((pts["cell_id"] > 0).mean())
