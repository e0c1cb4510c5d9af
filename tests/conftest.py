import pytest

import jointseg as jg


@pytest.fixture
def synth():
    """Fresh synthetic SpatialData with ground truth (functions under test modify it in place)."""
    return jg.datasets.synthetic(shape=(256, 256), n_cells=25, seed=3)


@pytest.fixture
def segmented(synth):
    jg.pp.nuclei(synth, image_key="morphology")
    jg.seg.expand_nuclei(synth, image_key="morphology", points_key="transcripts")
    return synth


@pytest.fixture(scope="session")
def cluster():
    """Two dask worker processes, started once for every test that compares a cluster run with a threaded one."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="2GiB") as cluster:
        yield cluster
