"""Quality metrics: instance matching against ground truth, and reference-free assignment metrics."""

from jointseg.metrics._assignment import assignment_summary, exclusive_marker_pairs, mecr
from jointseg.metrics._borders import background_border_fraction
from jointseg.metrics._calling import cell_calling
from jointseg.metrics._instances import instance_scores, match_instances
from jointseg.metrics._report import segmentation_report
from jointseg.metrics._shapes import shape_metrics

__all__ = [
    "assignment_summary",
    "background_border_fraction",
    "cell_calling",
    "exclusive_marker_pairs",
    "instance_scores",
    "match_instances",
    "mecr",
    "segmentation_report",
    "shape_metrics",
]
