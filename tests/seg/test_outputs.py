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
