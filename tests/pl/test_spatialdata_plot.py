"""Every element a jointseg segmentation writes renders with spatialdata-plot, coloured from the table."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import jointseg as jg

pytestmark = pytest.mark.smoke  # also run on Python 3.12 with the newest spatialdata (make test-py312)


@pytest.fixture(scope="module")
def refined():
    sdata = jg.datasets.synthetic(shape=(192, 192), n_cells=10, seed=2)
    jg.pp.nuclei(sdata, image_key="morphology")
    jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts", refine=True)
    return sdata


def test_labels_nuclei_and_points_render(refined):
    ax = (
        refined.pl.render_images("morphology")
        .pl.render_labels("cell_labels", color="n_transcripts", table_name="table")
        .pl.render_labels("nuclei", fill_alpha=0.0, outline_alpha=1.0)
        .pl.render_points("transcripts", color="jg_cell_id", size=1)
        .pl.show(return_ax=True, colorbar=False)
    )
    assert len(ax.images) >= 3  # stain, cells (coloured by the table), nuclei outlines
    assert sum(len(c.get_offsets()) for c in ax.collections) >= len(refined["transcripts"]) // 2


def test_polygons_render_coloured_by_a_gene_of_the_table(refined):
    jg.io.annotate_table(refined, "cell_boundaries")
    gene = refined["table"].var_names[0]
    ax = refined.pl.render_shapes("cell_boundaries", color=gene, table_name="table").pl.show(
        return_ax=True, colorbar=False
    )
    faces = np.concatenate([c.get_facecolor() for c in ax.collections])
    assert len({tuple(np.round(f, 3)) for f in faces}) > 1  # coloured by expression, not one flat colour
    jg.io.annotate_table(refined, "cell_labels")
