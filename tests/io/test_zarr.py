import pytest

import jointseg as jg

pytestmark = pytest.mark.smoke  # also run on Python 3.12 with the newest spatialdata (make test-py312)


def test_round_trip_and_refusal(tmp_path, segmented):
    path = tmp_path / "out.zarr"
    jg.io.write_zarr(segmented, path)
    back = jg.io.read_zarr(path)
    assert not back.is_backed()
    assert set(back.labels) == {"nuclei", "cell_labels", "true_cells", "true_nuclei"}
    assert back["table"].n_obs == segmented["table"].n_obs
    assert "jg_cell_id" in back["transcripts"].columns
    with pytest.raises(FileExistsError, match="overwrite"):
        jg.io.write_zarr(segmented, path)
    assert not (tmp_path / ".out.zarr.partial").exists()


def test_read_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        jg.io.read_zarr(tmp_path / "nope.zarr")
