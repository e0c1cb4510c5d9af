import numpy as np

import jointseg as jg


def test_truth_is_consistent():
    sdata = jg.datasets.synthetic(shape=(200, 220), n_cells=20, seed=1)
    nuclei, cells = sdata["true_nuclei"].values, sdata["true_cells"].values
    assert nuclei.shape == cells.shape == (200, 220)
    # every nucleus lies inside its own cell
    inside = nuclei > 0
    assert (cells[inside] == nuclei[inside]).all()
    df = sdata["transcripts"].compute()
    px = 0.2125
    lookup = cells[np.rint(df["y"] / px).astype(int).clip(0, 199), np.rint(df["x"] / px).astype(int).clip(0, 219)]
    assert (lookup == df["true_cell_id"].to_numpy()).all()
    assert sdata["truth"].n_obs == int(cells.max())


def test_touching_nuclei_exist_and_seed_is_deterministic():
    a = jg.datasets.synthetic(shape=(256, 256), n_cells=40, seed=7)
    b = jg.datasets.synthetic(shape=(256, 256), n_cells=40, seed=7)
    np.testing.assert_array_equal(a["morphology"].values, b["morphology"].values)
    nuclei = a["true_nuclei"].values
    # two different nuclei side by side horizontally somewhere
    left, right = nuclei[:, :-1], nuclei[:, 1:]
    assert ((left > 0) & (right > 0) & (left != right)).any()


def test_type_specific_genes():
    sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=30, seed=2, specific_fraction=1.0, background_transcripts=0)
    df = sdata["transcripts"].compute()
    types = sdata["truth"].obs.set_index("cell_id")["cell_type"]
    t = types.loc[df["true_cell_id"]].str.replace("type_", "T").to_numpy()
    assert (df["feature_name"].astype(str).str.split("_").str[0].to_numpy() == t).all()
