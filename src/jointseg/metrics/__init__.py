"""Quality metrics: instance matching against ground truth, and reference-free assignment metrics."""

from jointseg.metrics._assignment import assignment_summary, exclusive_marker_pairs, mecr
from jointseg.metrics._instances import instance_scores, match_instances

__all__ = ["assignment_summary", "exclusive_marker_pairs", "instance_scores", "match_instances", "mecr"]
