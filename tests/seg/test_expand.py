import numpy as np

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
