import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

import jointseg as jg


def test_qc_panels_match_the_table(segmented):
    fig = jg.pl.qc(segmented)
    axes = fig.axes
    table = segmented["table"]
    cells_map = axes[0].images[0].get_array()
    assert np.nansum(cells_map) == table.n_obs  # every cell counted once in the tile map
    fraction = np.ma.filled(axes[1].images[0].get_array().astype(float), np.nan)
    pts = segmented["transcripts"].compute()
    assert np.nanmax(fraction) <= 1 and np.nanmin(fraction) >= 0
    assert f"{table.n_obs:,} cells" in fig._suptitle.get_text()
    hist_axes = [ax for ax in axes if ax.get_ylabel() == "cells"]
    assert len(hist_axes) == 4
    counts = sum(p.get_height() for p in hist_axes[0].patches)
    assert counts == table.n_obs
    assert (pts["jg_cell_id"] > 0).any()


def test_qc_without_points_or_shapes(segmented):
    fig = jg.pl.qc(segmented, points_key=None)
    assert any(t.get_text() == "no per-transcript cell ids" for ax in fig.axes for t in ax.texts)


def test_qc_draws_into_a_given_subfigure(segmented):
    outer = plt.figure(figsize=(20, 8))
    left, right = outer.subfigures(1, 2)
    assert jg.pl.qc(segmented, fig=right) is right
    assert len(right.axes) >= 6 and not left.axes
