"""Instance segmentation metrics against ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd


def match_instances(pred: np.ndarray, true: np.ndarray) -> pd.DataFrame:
    """Pixel IoU of every overlapping (true, predicted) pair of instances.

    Parameters
    ----------
    pred, true
        Label images of the same shape (0 = background).

    Returns
    -------
    Table with columns ``true``, ``pred``, ``intersection``, ``iou`` (only overlapping pairs).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1, 1, 0, 2]]); b = np.array([[1, 0, 0, 2]])
    >>> match_instances(a, b)["iou"].tolist()
    [0.5, 1.0]

    """
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"Shapes differ: {pred.shape} vs {true.shape}.")
    both = (pred > 0) & (true > 0)
    pairs = pd.DataFrame({"true": true[both], "pred": pred[both]}).value_counts().rename("intersection")
    pairs = pairs.reset_index()
    pred_area = pd.Series(pred[pred > 0]).value_counts()
    true_area = pd.Series(true[true > 0]).value_counts()
    union = (
        true_area.reindex(pairs["true"]).to_numpy()
        + pred_area.reindex(pairs["pred"]).to_numpy()
        - pairs["intersection"]
    )
    pairs["iou"] = pairs["intersection"] / union
    return pairs.sort_values(["true", "pred"], ignore_index=True)


def instance_scores(pred: np.ndarray, true: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """Mean best-match IoU, and precision / recall / F1 / AP at an IoU threshold.

    A predicted instance matches a true one when their IoU exceeds ``threshold`` (>= 0.5 makes the
    matching one-to-one). ``mean_iou`` averages, over true instances, the IoU of the best-matching
    prediction (0 if none). ``ap`` is TP / (TP + FP + FN) as in the cell-segmentation literature
    (Cellpose, Stardist).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([[1, 1, 0, 2, 2]]); p = np.array([[1, 1, 0, 0, 3]])
    >>> instance_scores(p, t)["f1"]
    0.5

    """
    pairs = match_instances(pred, true)
    true_ids = np.unique(true[true > 0])
    pred_ids = np.unique(pred[pred > 0])
    best = pairs.groupby("true")["iou"].max().reindex(true_ids).fillna(0.0)
    tp = int((pairs["iou"] > threshold).sum())
    fp, fn = len(pred_ids) - tp, len(true_ids) - tp
    precision = tp / max(len(pred_ids), 1)
    recall = tp / max(len(true_ids), 1)
    return {
        "n_true": len(true_ids),
        "n_pred": len(pred_ids),
        "mean_iou": float(best.mean()) if len(best) else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "ap": tp / max(tp + fp + fn, 1),
    }
