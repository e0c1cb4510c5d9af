"""Tools: transcripts-to-cells aggregation."""

from jointseg.tl._aggregate import aggregate

__all__ = ["aggregate"]
