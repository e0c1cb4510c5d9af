import numpy as np
import pytest

import jointseg as jg


@pytest.mark.slow
def test_full_real_crop():
    sdata = jg.datasets.xenium_breast(subset="full")
    jg.pp.nuclei(sdata, image_key="morphology")
    n_nuclei = int(sdata["nuclei"].max())
    assert 1000 <= n_nuclei <= 1250  # Xenium's own pipeline: ~1,120 cells; naive Otsu watershed ~760
    jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts", max_distance_um=8)
    s = jg.metrics.assignment_summary(sdata["table"])
    assert s["fraction_assigned"] > 0.93
    assert s["median_transcripts_per_cell"] >= 100
    assert np.isclose(sdata["table"].X.sum(), s["fraction_assigned"] * 186146)
