import numpy as np
import pytest
from scipy import ndimage as ndi

import jointseg as jg
from jointseg.datasets._regimes import REGIMES


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


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_regimes_are_the_same_tissue_at_any_pixel_size(regime):
    """Sizes are in microns: cells cover the same area at 0.2125 and 0.5 um/px, nuclei sit inside
    their cells, each cell is one piece, and true ids name the cell that made each transcript.
    """
    areas = []
    for px in (0.2125, 0.5):
        size = int(round(120 / px))
        sdata = jg.datasets.synthetic(regime=regime, shape=(size, size), n_cells=300, pixel_size=px, seed=3)
        nuclei, cells = sdata["true_nuclei"].values, sdata["true_cells"].values
        assert (cells[nuclei > 0] == nuclei[nuclei > 0]).all()
        ids = np.unique(cells[cells > 0])
        assert all(ndi.label(cells == i)[1] == 1 for i in ids[:50])
        areas.append(np.bincount(cells.ravel())[ids].mean() * px**2)
        df = sdata["transcripts"].compute()
        assert df["true_cell_id"].max() <= cells.max() and (df["true_cell_id"] == 0).mean() < 0.2
    assert areas[0] == pytest.approx(areas[1], rel=0.15)


def test_regime_cells_reach_beyond_their_nuclei_as_specified():
    """Cultured cells reach 9-15 um beyond their nuclei along their short axis; lymphocytes 1-2.5 um."""
    for regime, (lo, hi) in {"cultured": (9.0, 15.0), "lymphoid": (1.0, 2.5)}.items():
        sdata = jg.datasets.synthetic(regime=regime, shape=(600, 600), n_cells=300, pixel_size=0.5, seed=1)
        nuclei, cells = sdata["true_nuclei"].values, sdata["true_cells"].values
        ids = np.unique(nuclei[nuclei > 0])
        # Equivalent radii: the cell's exceeds the nucleus's by about the extent (more for elongated cells).
        grow = np.sqrt(np.bincount(cells.ravel())[ids] / np.pi) - np.sqrt(np.bincount(nuclei.ravel())[ids] / np.pi)
        assert lo * 0.7 <= np.median(grow) * 0.5 <= hi * 1.5


def test_unknown_regime_is_refused():
    with pytest.raises(ValueError, match="Unknown regime"):
        jg.datasets.synthetic(regime="liver")
