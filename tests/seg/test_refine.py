import numpy as np
import pytest
from spatialdata.models import Labels2DModel
from spatialdata.transformations import get_transformation

import jointseg as jg

KW = {"image_key": "morphology", "points_key": "transcripts"}


@pytest.fixture(scope="module")
def expanded():
    """A regime slide (types with their own genes, spill across borders) with nuclei and the default expansion."""
    sdata = jg.datasets.synthetic(regime="stroma", shape=(480, 480), pixel_size=0.25, seed=2)
    jg.pp.nuclei(sdata, image_key="morphology")
    jg.seg.expand_nuclei(sdata, **KW)
    return sdata


def _refine(sdata, **kw):
    return jg.seg.refine(sdata, labels_key="cell_labels", copy=True, **KW, **kw)


@pytest.mark.smoke
def test_outputs_are_linked_and_replace_the_input_ids(expanded):
    out = _refine(expanded)
    labels, table = out["refined_labels"].values, out["refined_table"]
    ids = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert list(table.obs_names) == [str(i) for i in ids]
    assert list(out["refined_boundaries"].index) == list(table.obs["cell_id"]) == list(ids)
    assert table.uns["jointseg"]["refined_labels"]["method"] == "refine"
    assert table.uns["jointseg"]["refined_labels"]["labels_key"] == "cell_labels"
    cell_of_transcript = out["transcripts"]["jg_cell_id"].compute()
    assert (cell_of_transcript > 0).sum() == table.X.sum()
    assert "jg_cell_id" in expanded["transcripts"].columns  # copy=True left the input alone
    assert len(ids) == int(expanded["cell_labels"].values.max())  # every cell kept


def test_cells_keep_their_nuclei_and_stay_connected(expanded):
    from scipy import ndimage as ndi

    out = _refine(expanded)
    refined, nuclei = out["refined_labels"].values, expanded["nuclei"].values
    before = expanded["cell_labels"].values
    inside = (nuclei > 0) & (before > 0)
    # Refined ids are renumbered: the map from input to refined ids is one-to-one on the nuclei.
    pairs = np.unique(np.c_[before[inside], refined[inside]], axis=0)
    assert len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))
    assert (refined[inside] > 0).all()
    broken = [c for c in np.unique(refined[refined > 0]) if ndi.label(refined == c)[1] > 1]
    assert len(broken) <= 0.02 * refined.max()  # only where a nucleus's own pixels poke out of its bins


def test_refined_cells_are_closer_to_the_truth(expanded):
    truth = expanded["true_cells"].values
    out = _refine(expanded)
    before = jg.metrics.instance_scores(expanded["cell_labels"].values, truth)["mean_iou"]
    after = jg.metrics.instance_scores(out["refined_labels"].values, truth)["mean_iou"]
    assert after > before


def test_same_seed_same_cells_and_tiled_equals_whole(expanded):
    whole = _refine(expanded, block_size=4096)["refined_labels"].values
    again = _refine(expanded, block_size=4096)["refined_labels"].values
    np.testing.assert_array_equal(whole, again)
    tiled = _refine(expanded, block_size=160)["refined_labels"].values
    assert jg.metrics.instance_scores(tiled, whole)["mean_iou"] >= 0.99
    assert jg.metrics.instance_scores(whole, tiled)["mean_iou"] >= 0.99


def test_counts_summed_in_batches_of_blocks_give_the_same_cells(expanded, monkeypatch):
    import jointseg._core.refinement as refinement

    at_once = _refine(expanded, block_size=160)["refined_labels"].values  # 9 blocks, one batch
    monkeypatch.setattr(refinement, "_BLOCKS_PER_SUM", 2)
    np.testing.assert_array_equal(_refine(expanded, block_size=160)["refined_labels"].values, at_once)


def test_em_refits_the_cells_until_they_settle(expanded):
    def moved(out):
        return out["refined_table"].uns["jointseg"]["refined_labels"]["refine"]["em_moved_fraction"]

    once = _refine(expanded, em_iterations=1)
    assert len(moved(once)) == 0
    twice = _refine(expanded, em_iterations=2)
    assert len(moved(twice)) == 1 and moved(twice)[0] > 0.005  # the first fit's cells were the input's
    assert not np.array_equal(once["refined_labels"].values, twice["refined_labels"].values)
    settled = _refine(expanded, em_iterations=6, em_tolerance=1.0)  # any change counts as settled
    assert len(moved(settled)) == 2
    with pytest.raises(ValueError, match="em_iterations"):
        _refine(expanded, em_iterations=0)


def test_polygons_refine_like_their_labels(expanded):
    """A vendor's cells come as polygons: rasterised, they refine like the labels they outline."""
    from_labels = _refine(expanded)["refined_labels"].values
    from_polygons = jg.seg.refine(expanded, shapes_key="cell_boundaries", copy=True, **KW)
    assert from_polygons["refined_table"].uns["jointseg"]["refined_labels"]["shapes_key"] == "cell_boundaries"
    assert jg.metrics.instance_scores(from_polygons["refined_labels"].values, from_labels)["mean_iou"] >= 0.95
    with pytest.raises(ValueError, match="not both"):
        jg.seg.refine(expanded, labels_key="cell_labels", shapes_key="cell_boundaries", **KW)


def test_cheaper_borders_with_the_background_open_gaps_between_cells():
    # Lymphocytes with background between them (regime "tumour"): with each cell paying only for its
    # own perimeter, the small cells no longer close the gaps and come closer to the truth.
    sdata = jg.datasets.synthetic(regime="tumour", shape=(300, 300), pixel_size=0.5, seed=0)
    jg.pp.nuclei(sdata, image_key="morphology")
    jg.seg.expand_nuclei(sdata, **KW)
    truth = sdata["true_cells"].values
    packed, gaps = (_refine(sdata, background_border=b)["refined_labels"].values for b in (1.0, 0.5))
    assert (gaps > 0).sum() < 0.95 * (packed > 0).sum()
    assert (jg.metrics.instance_scores(gaps, truth)["mean_iou"]
            > jg.metrics.instance_scores(packed, truth)["mean_iou"] + 0.03)  # fmt: skip


def test_refines_cells_without_nuclei_and_a_single_cell(expanded):
    sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=1, seed=0)
    out = jg.seg.refine(sdata, labels_key="true_cells", copy=True, **KW)  # no nuclei: anchors are cell cores
    assert int(out["refined_labels"].values.max()) == 1
    assert out["refined_table"].uns["jointseg"]["refined_labels"]["nuclei_key"] is None


def test_bad_inputs(expanded):
    sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=3, seed=0)
    with pytest.raises(KeyError, match="No label element"):
        jg.seg.refine(sdata, labels_key="missing", **KW)
    with pytest.raises(ValueError, match="Pass labels_key"):
        jg.seg.refine(sdata, **KW)  # true_cells and true_nuclei: which one?
    with pytest.raises(ValueError, match="must differ"):
        jg.seg.refine(sdata, labels_key="true_cells", key_added="true_cells", **KW)
    with pytest.raises(ValueError, match="smoothness"):
        jg.seg.refine(sdata, labels_key="true_cells", smoothness=-1, **KW)
    with pytest.raises(ValueError, match="background_border"):
        jg.seg.refine(sdata, labels_key="true_cells", background_border=0, **KW)
    # Cells without any transcript: nothing to learn their expression from.
    empty = np.zeros((128, 128), np.int32)
    empty[:5, :5] = 1
    transform = get_transformation(sdata["morphology"], get_all=True)
    sdata["corner"] = Labels2DModel.parse(empty, dims=("y", "x"), transformations=transform)
    sdata["transcripts"] = sdata["transcripts"][sdata["transcripts"]["y"] > 10]
    with pytest.raises(ValueError, match="No transcript falls in any cell's core"):
        jg.seg.refine(sdata, labels_key="corner", **KW)
    assert "refined_labels" not in sdata.labels


def test_empty_panel_after_filtering():
    sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=3, seed=0)
    points = sdata["transcripts"]
    points["feature_name"] = "NegControlProbe_1"  # every transcript a control probe: no gene left
    sdata["transcripts"] = points
    with pytest.raises(ValueError, match="No transcript falls in any cell's core"):
        jg.seg.refine(sdata, labels_key="true_cells", **KW)


def test_labels_on_another_grid_refused():
    sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=3, seed=0)
    small = Labels2DModel.parse(np.ones((64, 64), np.int32), dims=("y", "x"))
    sdata["small"] = small
    with pytest.raises(ValueError, match="not on the pixel grid"):
        jg.seg.refine(sdata, labels_key="small", **KW)


def test_gene_weights_decide_which_genes_count(expanded):
    plain = _refine(expanded)["refined_labels"].values
    genes = list(expanded["transcripts"]["feature_name"].cat.categories)
    # Weights are scaled to a mean of 1 per transcript: the same weight for every gene changes nothing.
    same = _refine(expanded, gene_weights=dict.fromkeys(genes, 5.0))
    np.testing.assert_array_equal(same["refined_labels"].values, plain)
    assert same["refined_table"].uns["jointseg"]["refined_labels"]["refine"]["gene_weighted"]
    # Half the genes silenced: the cells follow the others only.
    half = _refine(expanded, gene_weights={g: float(i % 2) for i, g in enumerate(genes)})["refined_labels"].values
    assert not np.array_equal(half, plain)
    with pytest.raises(ValueError, match="finite values >= 0"):
        _refine(expanded, gene_weights={genes[0]: -1.0})
    with pytest.raises(ValueError, match="no value for any gene"):
        _refine(expanded, gene_weights={"not a gene": 1.0})
