import os

import numpy as np
import pytest
from spatialdata import SpatialData
from spatialdata.models import PointsModel

import jointseg as jg
from jointseg.cli import main


def _snapshot(path):
    return sorted(
        (os.path.relpath(os.path.join(root, f), path), os.path.getsize(os.path.join(root, f)),
         os.path.getmtime(os.path.join(root, f)))
        for root, _, files in os.walk(path) for f in files
    )  # fmt: skip


@pytest.fixture(scope="module")
def xenium_store(tmp_path_factory):
    """The shipped real crop written by spatialdata itself (not built by jointseg's tests)."""
    path = tmp_path_factory.mktemp("in") / "xenium_small.zarr"
    jg.datasets.xenium_breast(subset="small").write(path)
    return path


def _store_with_points(tmp_path, df, **parse_kwargs):
    sdata = jg.datasets.xenium_breast(subset="small")
    sdata["transcripts"] = PointsModel.parse(df, coordinates={"x": "x", "y": "y"}, **parse_kwargs)
    path = tmp_path / "in.zarr"
    sdata.write(path)
    return path


def _small_df():
    return jg.datasets.xenium_breast(subset="small")["transcripts"].compute()


def test_segment_round_trip_leaves_input_untouched(xenium_store, tmp_path, capsys):
    before = _snapshot(xenium_store)
    out = tmp_path / "out.zarr"
    rc = main(["segment", str(xenium_store), str(out), "--image-key", "morphology", "--points-key", "transcripts",
               "--method", "expand_nuclei", "--device", "cpu", "--seed", "1"])  # fmt: skip
    assert rc == 0
    assert "expand_nuclei:" in capsys.readouterr().out
    assert _snapshot(xenium_store) == before
    result = jg.io.read_zarr(out)
    assert {"nuclei", "cell_labels"} <= set(result.labels)
    assert "cell_boundaries" in result.shapes and "morphology" in result.images
    table = result["table"]
    assert table.n_obs == len(result["cell_boundaries"]) > 100
    assert table.X.sum() == (result["transcripts"]["jg_cell_id"].compute() > 0).sum()
    # refuses an existing output, then replaces it with --overwrite
    assert main(["segment", str(xenium_store), str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["run", str(xenium_store), str(out), "--overwrite"]) == 0


def test_segment_with_refine_then_refine_a_store(xenium_store, tmp_path, capsys):
    out = tmp_path / "refined.zarr"
    assert main(["segment", str(xenium_store), str(out), "--refine", "--labels-key", "joint"]) == 0
    out_text = capsys.readouterr().out
    assert "expand_nuclei: " in out_text and "refined by expression" in out_text
    result = jg.io.read_zarr(out)
    assert result["table"].uns["jointseg"]["joint"]["refine"]["n_types_found"] >= 2
    # refine any labels in a store (here the refined cells again, with rounder cells)
    again = tmp_path / "again.zarr"
    assert main(["refine", str(out), str(again), "--labels-key", "joint", "--smoothness", "2"]) == 0
    assert "refine:" in capsys.readouterr().out
    result = jg.io.read_zarr(again)
    assert result["refined_table"].uns["jointseg"]["refined_labels"]["refine"]["smoothness"] == 2
    assert result["refined_table"].uns["jointseg"]["refined_labels"]["labels_key"] == "joint"
    assert main(["refine", str(out), str(tmp_path / "x.zarr"), "--labels-key", "missing"]) == 2
    assert "No label element 'missing'" in capsys.readouterr().err


def test_missing_key_lists_choices(xenium_store, tmp_path, capsys):
    assert main(["segment", str(xenium_store), str(tmp_path / "o.zarr"), "--image-key", "dapi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jointseg: error:") and "['morphology']" in err
    assert not (tmp_path / "o.zarr").exists()


def test_points_without_gene_column(tmp_path, capsys):
    df = _small_df()[["x", "y"]]
    path = _store_with_points(tmp_path, df)
    assert main(["segment", str(path), str(tmp_path / "o.zarr")]) == 2
    assert "no gene column" in capsys.readouterr().err


def test_points_not_overlapping_image(tmp_path, capsys):
    df = _small_df()
    df["x"] += 5000.0
    path = _store_with_points(tmp_path, df, feature_key="feature_name")
    assert main(["segment", str(path), str(tmp_path / "o.zarr")]) == 2
    assert "do not overlap" in capsys.readouterr().err


def test_empty_points(tmp_path, capsys):
    df = _small_df().iloc[:0]
    path = _store_with_points(tmp_path, df, feature_key="feature_name")
    assert main(["segment", str(path), str(tmp_path / "o.zarr")]) == 2
    assert "empty" in capsys.readouterr().err


def test_nan_coordinates_dropped_with_count(tmp_path, caplog):
    df = _small_df()
    df.loc[df.index[:5], "x"] = np.nan
    path = _store_with_points(tmp_path, df, feature_key="feature_name")
    with caplog.at_level("WARNING", logger="jointseg"):
        assert main(["segment", str(path), str(tmp_path / "o.zarr")]) == 0
    assert caplog.text.count("Dropped 5 transcripts with NaN") == 1


def test_unknown_method_rejected(xenium_store, tmp_path):
    with pytest.raises(SystemExit):
        main(["segment", str(xenium_store), str(tmp_path / "o.zarr"), "--method", "magic"])


def test_demo_on_shipped_crop(tmp_path, capsys):
    assert main(["demo", "--subset", "small", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "CC BY 4.0" in out and "expand_nuclei + refine" in out and "not refined" in out and "vendor" in out
    assert "cell types (pseudolabels):" in out
    assert (tmp_path / "segmentation.png").stat().st_size > 10_000
    assert (tmp_path / "cell_types.png").stat().st_size > 10_000
    assert isinstance(jg.io.read_zarr(tmp_path / "demo.zarr"), SpatialData)


def test_segment_with_genesegnet_and_a_saved_model(xenium_store, tmp_path, capsys):
    out = tmp_path / "gsn.zarr"
    rc = main(["segment", str(xenium_store), str(out), "--method", "genesegnet", "--steps", "2", "--seed", "0"])
    assert rc == 0, capsys.readouterr().err
    assert "genesegnet:" in capsys.readouterr().out
    result = jg.io.read_zarr(out)
    params = result["table"].uns["jointseg"]["cell_labels"]
    assert params["method"] == "genesegnet" and params["seed"] == 0
    assert main(["segment", str(xenium_store), str(tmp_path / "x.zarr"), "--model", "m.pt"]) == 2
    assert "does not apply" in capsys.readouterr().err


def test_segment_with_segjointgene(xenium_store, tmp_path, capsys):
    out = tmp_path / "sjg.zarr"
    rc = main(["segment", str(xenium_store), str(out), "--method", "segjointgene", "--steps", "3", "--seed", "0"])
    assert rc == 0, capsys.readouterr().err
    assert "segjointgene:" in capsys.readouterr().out
    table = jg.io.read_zarr(out)["table"]
    assert table.uns["jointseg"]["cell_labels"]["method"] == "segjointgene"
    assert table.var["jg_cid_rank"].min() == 1


def test_segment_with_sslcst(xenium_store, tmp_path, capsys):
    out = tmp_path / "sslcst.zarr"
    rc = main(["segment", str(xenium_store), str(out), "--method", "sslcst", "--steps", "5", "--seed", "0"])
    assert rc == 0, capsys.readouterr().err
    assert "sslcst:" in capsys.readouterr().out
    table = jg.io.read_zarr(out)["table"]
    params = table.uns["jointseg"]["cell_labels"]
    assert params["method"] == "sslcst" and params["training_log"]["steps"] == 5
