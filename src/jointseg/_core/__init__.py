"""The engine every layer stands on (private).

Tiling and stitching, sliding-window fields, the transcript index, aggregation kernels, labels to
shapes, output writing, backed stores and checkpoints, units, gene channels, nuclei growth, mask
clean-up, constants and element helpers. It imports nothing else from jointseg; everything else
may import it.
"""
