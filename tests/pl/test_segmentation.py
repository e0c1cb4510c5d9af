import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.collections import PatchCollection

import jointseg as jg
from jointseg._core.units import pixel_size_um


def test_overlay_draws_stain_outlines_and_points_in_the_coordinate_system(segmented):
    ax = jg.pl.segmentation(segmented, image_key="morphology", nuclei_key="nuclei", points_key="transcripts",
                            region=(20, 120, 30, 200))  # fmt: skip
    assert len(ax.images) == 1  # the stain
    outlines = [c for c in ax.collections if isinstance(c, PatchCollection) and len(c.get_edgecolor())]
    colours = {tuple(np.round(c.get_edgecolor()[0][:3], 2)) for c in outlines}
    assert colours == {(1.0, 0.0, 0.0), (0.0, 1.0, 1.0)}  # cells red, nuclei cyan
    assert max(len(c.get_offsets()) for c in ax.collections if not isinstance(c, PatchCollection)) > 100
    px = pixel_size_um(segmented, "morphology")  # axes in microns: the window's pixel edges times the pixel size
    np.testing.assert_allclose(ax.get_xlim(), (29.5 * px, 199.5 * px))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["assigned", "unassigned"]


def test_overlay_colours_by_gene_and_cell(segmented):
    kw = {"image_key": "morphology", "points_key": "transcripts"}
    ax = jg.pl.segmentation(segmented, **kw, color_by="gene", genes=["T0_0"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["T0_0"]
    ax = jg.pl.segmentation(segmented, **kw, color_by="cell")
    drawn = [len(c.get_offsets()) for c in ax.collections if not isinstance(c, PatchCollection)]
    assert sum(n > 0 for n in drawn) == 2  # unassigned (grey), then assigned (one colour per cell)
    with pytest.raises(ValueError, match="color_by"):
        jg.pl.segmentation(segmented, **kw, color_by="type")
