import numpy as np
import pytest

import jointseg as jg


def test_polygons_agree_with_lookup(segmented):
    """The pixel convention of aggregation and of the polygons is the same (pixel centres at integers)."""
    import geopandas as gpd

    pts = segmented["transcripts"].compute()
    shapes = segmented["cell_boundaries"]
    px = 0.2125
    gdf = gpd.GeoDataFrame(geometry=gpd.points_from_xy(pts["x"] / px, pts["y"] / px))
    joined = gpd.sjoin(gdf, shapes[["geometry"]], predicate="within", how="left")
    joined = joined[~joined.index.duplicated()]
    by_polygon = joined["index_right"].fillna("0").astype(int).to_numpy()
    agree = (by_polygon == pts["jg_cell_id"].to_numpy()).mean()
    assert agree > 0.99  # the rest sit exactly on pixel-corner boundaries


def test_expansion_improves_on_nuclei_and_grows_with_distance(synth):
    jg.pp.nuclei(synth, image_key="morphology")
    truth = synth["true_cells"].values
    nuclei_iou = jg.metrics.instance_scores(synth["nuclei"].values, truth)["mean_iou"]
    assigned = []
    for d in (2.0, 4.0):
        jg.seg.expand_nuclei(synth, image_key="morphology", points_key="transcripts", max_distance_um=d,
                             min_density_per_um2=0, overwrite=True)  # fmt: skip
        assigned.append(jg.metrics.assignment_summary(synth["table"])["fraction_assigned"])
    iou = jg.metrics.instance_scores(synth["cell_labels"].values, truth)["mean_iou"]
    assert iou > nuclei_iou + 0.1
    assert assigned[1] > assigned[0]


def test_tiled_equals_untiled(synth):
    jg.pp.nuclei(synth, image_key="morphology")
    jg.seg.expand_nuclei(synth, image_key="morphology", points_key="transcripts", block_size=4096)
    whole = synth["cell_labels"].values.copy()
    jg.seg.expand_nuclei(synth, image_key="morphology", points_key="transcripts", block_size=80, overwrite=True)
    np.testing.assert_array_equal(synth["cell_labels"].values, whole)


def test_grow_nuclei_respects_foreground():
    nuc = np.zeros((5, 5), int)
    nuc[2, 2] = 1
    fg = np.zeros((5, 5), bool)
    fg[2, :] = True
    out = jg.seg.grow_nuclei(nuc, fg, distance=2)
    assert (out[2] == 1).all() and out.sum() == 5


@pytest.mark.parametrize("extent_um", [3.0, 15.0])
def test_default_reach_follows_the_cells_and_the_halo_follows_the_reach(extent_um):
    """Cells reaching 3 or 15 um: the estimated reach beats the old fixed 8 um, and blocks much
    smaller than a cell give the same cells (the halo grows with the estimated reach).
    """
    d = extent_um / 0.2125
    sdata = jg.datasets.synthetic(shape=(640, 640), n_cells=60, seed=2, cell_expansion_px=(0.9 * d, 1.1 * d),
                                  min_centre_distance_px=1.6 * (1.1 * d + 12), background_transcripts=1000)  # fmt: skip
    truth = sdata["true_cells"].values
    kw = {"image_key": "morphology", "points_key": "transcripts", "nuclei_key": "true_nuclei"}
    jg.seg.expand_nuclei(sdata, max_distance_um=8.0, **kw)
    fixed = jg.metrics.instance_scores(sdata["cell_labels"].values, truth)["mean_iou"]
    jg.seg.expand_nuclei(sdata, overwrite=True, **kw)
    whole = sdata["cell_labels"].values.copy()
    reach = sdata["table"].uns["jointseg"]["cell_labels"]["cell_extent_um"]
    assert reach["median"] == pytest.approx(extent_um, rel=0.25)
    assert jg.metrics.instance_scores(whole, truth)["mean_iou"] > fixed + 0.05
    jg.seg.expand_nuclei(sdata, block_size=96, overwrite=True, **kw)
    np.testing.assert_array_equal(sdata["cell_labels"].values, whole)


def test_refine_takes_options_of_the_refinement(synth):
    jg.pp.nuclei(synth, image_key="morphology")
    kw = {"image_key": "morphology", "points_key": "transcripts", "overwrite": True}
    jg.seg.expand_nuclei(synth, refine={"background_border": 0.5, "smoothness": 1.5}, seed=2, **kw)
    recorded = synth["table"].uns["jointseg"]["cell_labels"]["refine"]
    assert (recorded["background_border"], recorded["smoothness"], recorded["seed"]) == (0.5, 1.5, 2)
    with pytest.raises(ValueError, match=r"Unknown refine option.*smothness"):
        jg.seg.expand_nuclei(synth, refine={"smothness": 1.5}, **kw)
    with pytest.raises(ValueError, match=r"Unknown refine option.*seed"):
        jg.seg.expand_nuclei(synth, refine={"seed": 1}, **kw)
