"""The shared pipeline (nuclei, cells, table, per-transcript ids) on a dask.distributed cluster
gives exactly the threaded result. The networks' own cluster tests are in tests/seg."""

import numpy as np
import pytest

import jointseg as jg

distributed = pytest.importorskip("distributed")


def _pipeline(sdata):
    jg.pp.nuclei(sdata, image_key="morphology", block_size=128)
    jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts", block_size=128)
    return (
        sdata["nuclei"].values,
        sdata["cell_labels"].values,
        sdata["table"].X.toarray(),
        sdata["transcripts"]["jg_cell_id"].compute().to_numpy(),
    )


def test_local_cluster_matches_threaded(cluster):
    threaded = _pipeline(jg.datasets.synthetic(shape=(384, 384), n_cells=40, seed=5))
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        on_cluster = _pipeline(jg.datasets.synthetic(shape=(384, 384), n_cells=40, seed=5))
    workers = {task["worker"] for task in stream.data}
    assert len(workers) == 2  # the work really ran on both worker processes
    for a, b in zip(threaded, on_cluster, strict=True):
        np.testing.assert_array_equal(a, b)
    assert threaded[1].max() > 30
