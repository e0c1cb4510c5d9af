import numpy as np
import pytest
import spatialdata

import jointseg as jg


def test_backed_store_gets_each_element_written(tmp_path):
    path = tmp_path / "backed.zarr"
    jg.datasets.synthetic(shape=(160, 160), n_cells=10).write(path)
    sdata = spatialdata.read_zarr(path)
    jg.pp.nuclei(sdata, image_key="morphology")
    jg.seg.expand_nuclei(sdata, image_key="morphology", points_key="transcripts")
    on_disk = spatialdata.read_zarr(path)
    assert {"nuclei", "cell_labels"} <= set(on_disk.labels)
    assert "cell_boundaries" in on_disk.shapes
    assert on_disk["table"].n_obs == sdata["table"].n_obs > 5


def test_backed_run_streams_through_disk_and_matches_in_memory(tmp_path):
    path = tmp_path / "backed.zarr"
    jg.datasets.synthetic(shape=(160, 160), n_cells=10).write(path)
    in_memory = jg.io.read_zarr(path)
    jg.pp.nuclei(in_memory, image_key="morphology", block_size=64)
    jg.seg.expand_nuclei(in_memory, image_key="morphology", points_key="transcripts", block_size=64)
    backed = spatialdata.read_zarr(path)
    jg.pp.nuclei(backed, image_key="morphology", block_size=64)
    jg.seg.expand_nuclei(backed, image_key="morphology", points_key="transcripts", block_size=64)
    for key in ("nuclei", "cell_labels"):
        np.testing.assert_array_equal(backed[key].values, in_memory[key].values)
        # the element continues from the store, read lazily, not from blocks held in memory
        assert any("from-zarr" in name or "open_dataset" in name for name in backed[key].data.dask.layers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backed.zarr"]  # scratch stores removed


def test_no_cells_is_a_clear_error_and_writes_nothing(synth):
    import dask.array as da

    from jointseg._core.outputs import write_segmentation
    from jointseg._core.transcripts import build_transcript_index

    index = build_transcript_index(synth, "transcripts", "morphology", shape=(256, 256), block_size=128)
    empty = da.zeros((256, 256), dtype=np.int64, chunks=128)
    with pytest.raises(ValueError, match="found no cells"):
        write_segmentation(synth, empty, index, image_key="morphology", points_key="transcripts", nuclei_key=None,
                           labels_key="cells", shapes_key="cell_shapes", table_key="cells_table", method="test",
                           params={}, coordinate_system="global", overwrite=False)  # fmt: skip
    assert "cells" not in synth and "cells_table" not in synth
