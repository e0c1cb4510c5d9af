import dask.array as da
import numpy as np
import pytest
import spatialdata
import zarr
from spatialdata.models import Labels2DModel

import jointseg as jg
from jointseg._core.backed import partial_name, store_element


@pytest.fixture
def backed(tmp_path):
    path = tmp_path / "backed.zarr"
    jg.datasets.synthetic(shape=(160, 160), n_cells=10).write(path)
    return spatialdata.read_zarr(path)


def _labels(value: int, *, fail: bool = False):
    def block(x, block_info=None):
        if fail and block_info and block_info[0]["chunk-location"] == (1, 1):
            raise RuntimeError("killed mid-write")
        return x + value

    array = da.zeros((160, 160), np.uint32, chunks=80).map_blocks(block, dtype=np.uint32)
    return Labels2DModel.parse(array, dims=("y", "x"))


def test_overwriting_an_element_read_from_the_same_store(backed):
    jg.pp.nuclei(backed, image_key="morphology")
    first = backed["nuclei"].values.copy()
    jg.pp.nuclei(backed, image_key="morphology", min_area_um2=40.0, overwrite=True)  # reads from the store
    again = spatialdata.read_zarr(backed.path)
    np.testing.assert_array_equal(again["nuclei"].values, backed["nuclei"].values)
    assert not np.array_equal(again["nuclei"].values, first)
    labels_group = zarr.open_group(backed.path / "labels").attrs.asdict()["ome"]["labels"]
    assert labels_group.count("nuclei") == 1 and not any(name.startswith(".") for name in labels_group)
    scale = zarr.open_group(backed.path / "labels" / "nuclei").attrs.asdict()["ome"]["multiscales"][0]
    assert scale["name"] == "nuclei"
    assert not list(backed.path.glob("*/.*partial"))


def test_a_failed_write_leaves_the_earlier_element_and_no_partial(backed):
    store_element(backed, "cells", _labels(1), overwrite=False)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        store_element(backed, "cells", _labels(2, fail=True), overwrite=True)
    on_disk = spatialdata.read_zarr(backed.path)
    assert (on_disk["cells"].values == 1).all() and set(on_disk.labels) == set(backed.labels)
    store_element(backed, "cells", _labels(2), overwrite=True)  # the next write clears what was left
    assert (spatialdata.read_zarr(backed.path)["cells"].values == 2).all()
    assert not list(backed.path.glob("*/.*partial"))


def test_a_partial_left_by_a_killed_run_is_invisible_and_replaced(backed):
    partial = partial_name("cells")
    backed[partial] = _labels(1)
    backed.write_element(partial)  # what a run killed before the rename leaves
    reread = spatialdata.read_zarr(backed.path)
    assert "cells" not in reread and partial not in reread
    store_element(reread, "cells", _labels(3), overwrite=False)
    assert (spatialdata.read_zarr(backed.path)["cells"].values == 3).all()
    assert not (backed.path / "labels" / partial).exists()


def test_existing_element_on_disk_needs_overwrite(backed):
    store_element(backed, "cells", _labels(1), overwrite=False)
    fresh = spatialdata.read_zarr(backed.path)
    del fresh["cells"]  # only on disk now
    with pytest.raises(ValueError, match="already exists"):
        store_element(fresh, "cells", _labels(2), overwrite=False)
    assert (spatialdata.read_zarr(backed.path)["cells"].values == 1).all()


@pytest.mark.smoke
def test_tables_and_shapes_are_swapped_in_too(backed):
    jg.pp.nuclei(backed, image_key="morphology")
    jg.seg.expand_nuclei(backed, image_key="morphology", points_key="transcripts")
    n_first = backed["table"].n_obs
    jg.seg.expand_nuclei(backed, image_key="morphology", points_key="transcripts", max_distance_um=1.0, overwrite=True)
    again = spatialdata.read_zarr(backed.path)
    assert again["table"].n_obs == n_first
    assert again["table"].obs["area"].sum() == backed["table"].obs["area"].sum()
    assert len(again["cell_boundaries"]) == n_first
    assert not list(backed.path.glob("*/.*partial"))


def test_writing_into_the_store_is_announced(backed, caplog):
    with caplog.at_level("INFO", logger="jointseg"):
        jg.pp.nuclei(backed, image_key="morphology")
    lines = [r.getMessage() for r in caplog.records if "into the store" in r.getMessage()]
    assert len(lines) == 1 and "'nuclei'" in lines[0] and str(backed.path) in lines[0]
    assert "auto_save_on_disk" in lines[0]


def test_auto_save_off_keeps_the_store_pristine(backed, monkeypatch, caplog):
    monkeypatch.setattr(jg.settings, "auto_save_on_disk", False)
    before = sorted(p.relative_to(backed.path) for p in backed.path.rglob("*"))
    with caplog.at_level("INFO", logger="jointseg"):
        jg.pp.nuclei(backed, image_key="morphology")
        jg.seg.expand_nuclei(backed, image_key="morphology", points_key="transcripts")
    assert sorted(p.relative_to(backed.path) for p in backed.path.rglob("*")) == before
    assert not list(backed.path.parent.glob("*scratch*"))  # no scratch store beside it either
    assert not any("into the store" in r.getMessage() for r in caplog.records)
    # the results live in memory and are usable after the scratch space is gone
    assert backed["cell_labels"].values.max() == backed["table"].n_obs > 0
    assert "nuclei" not in spatialdata.read_zarr(backed.path)
