import os
import shutil

import dask.array as da
import numpy as np
import pytest
from spatialdata import SpatialData
from spatialdata.models import PointsModel

import jointseg as jg
import jointseg.cli
from jointseg.cli import main
from jointseg.cli._common import step


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


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    """A small synthetic slide (320 px) for the network methods' command-line plumbing."""
    path = tmp_path_factory.mktemp("in") / "synthetic.zarr"
    jg.io.write_zarr(jg.datasets.synthetic(shape=(320, 320), n_cells=30, seed=4), path)
    return path


def _store_with_points(tmp_path, df, **parse_kwargs):
    sdata = jg.datasets.xenium_breast(subset="small")
    sdata["transcripts"] = PointsModel.parse(df, coordinates={"x": "x", "y": "y"}, **parse_kwargs)
    path = tmp_path / "in.zarr"
    sdata.write(path)
    return path


def _small_df():
    return jg.datasets.xenium_breast(subset="small")["transcripts"].compute()


@pytest.mark.smoke
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
    args = ["--labels-key", "joint", "--smoothness", "2", "--background-border", "0.5"]
    assert main(["refine", str(out), str(again), *args]) == 0
    assert "refine:" in capsys.readouterr().out
    result = jg.io.read_zarr(again)
    assert result["refined_table"].uns["jointseg"]["refined_labels"]["refine"]["smoothness"] == 2
    assert result["refined_table"].uns["jointseg"]["refined_labels"]["refine"]["background_border"] == 0.5
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
    assert (tmp_path / "cluster_votes.png").stat().st_size > 10_000
    assert isinstance(jg.io.read_zarr(tmp_path / "demo.zarr"), SpatialData)


def test_train_once_and_apply_to_several_slides(synthetic_store, tmp_path, capsys):
    second = tmp_path / "second.zarr"
    shutil.copytree(synthetic_store, second)
    # several inputs: GeneSegNet trains on the first and applies that model to the others
    model = tmp_path / "gsn.pt"
    rc = main(["segment", str(synthetic_store), str(second), "--out-dir", str(tmp_path / "out"),
               "--method", "genesegnet", "--steps", "2", "--save-model", str(model), "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.out.count("genesegnet:") == 2 and "applying the model trained on" in captured.out
    assert "task/s" not in captured.err  # --quiet: no progress bars
    logs = [jg.io.read_zarr(tmp_path / "out" / p.name)["table"].uns["jointseg"]["cell_labels"]["training_log"]
            for p in (synthetic_store, second)]  # fmt: skip
    assert model.exists() and np.array_equal(logs[0]["rounds"], logs[1]["rounds"])  # one model, one training
    # train once, then apply with --model
    saved = tmp_path / "trained.pt"
    assert main(["train", str(synthetic_store), str(saved), "--method", "genesegnet", "--steps", "2"]) == 0
    captured = capsys.readouterr()
    assert "--model" in captured.out and saved.exists()
    assert "GeneSegNet round 1" in captured.err  # progress bars by default
    assert main(["train", str(synthetic_store), str(saved), "--method", "genesegnet"]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    out = tmp_path / "applied.zarr"
    assert main(["segment", str(synthetic_store), str(out), "--method", "genesegnet", "--model", str(saved)]) == 0
    assert "genesegnet:" in capsys.readouterr().out
    assert jg.io.read_zarr(out)["table"].uns["jointseg"]["cell_labels"]["method"] == "genesegnet"
    assert main(["segment", str(synthetic_store), str(tmp_path / "x.zarr"), "--model", "m.pt"]) == 2
    assert "does not apply" in capsys.readouterr().err
    assert main(["segment", str(synthetic_store), str(second), str(tmp_path / "y.zarr")]) == 2
    assert "--out-dir" in capsys.readouterr().err


def test_tiled_steps_show_one_progress_bar_per_computation(capsys):
    blocks = da.ones((64, 64), chunks=8)  # 64 blocks
    with step("tiles", quiet=False):
        assert float((blocks * 2).sum().compute()) == 2 * 64 * 64
    assert "tiles" in capsys.readouterr().err
    with step("tiles", quiet=True):
        (blocks * 2).sum().compute()
    assert capsys.readouterr().err == ""


def test_report_prints_the_quality_summary_and_writes_the_figure(xenium_store, tmp_path, capsys):
    out = tmp_path / "cells.zarr"
    assert main(["segment", str(xenium_store), str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("cells", "transcripts assigned", "median transcripts per cell", "MECR", "median convexity"):
        assert name in text
    mecr = float(next(line for line in text.splitlines() if "MECR (lower" in line).split()[-1])
    assert 0 < mecr < 0.5
    assert (tmp_path / "cells_qc.png").stat().st_size > 10_000
    assert main(["report", str(out), "--table-key", "nope"]) == 2
    assert "No table 'nope'" in capsys.readouterr().err


def test_segment_with_segjointgene(xenium_store, tmp_path, capsys):
    out = tmp_path / "sjg.zarr"
    rc = main(["segment", str(xenium_store), str(out), "--method", "segjointgene", "--steps", "3", "--seed", "0"])
    assert rc == 0, capsys.readouterr().err
    assert "segjointgene:" in capsys.readouterr().out
    table = jg.io.read_zarr(out)["table"]
    assert table.uns["jointseg"]["cell_labels"]["method"] == "segjointgene"
    assert table.var["jg_cid_rank"].min() == 1


def test_segment_with_sslcst(synthetic_store, tmp_path, capsys):
    out = tmp_path / "sslcst.zarr"
    rc = main(["segment", str(synthetic_store), str(out), "--method", "sslcst", "--steps", "5", "--seed", "0"])
    assert rc == 0, capsys.readouterr().err
    assert "sslcst:" in capsys.readouterr().out
    table = jg.io.read_zarr(out)["table"]
    params = table.uns["jointseg"]["cell_labels"]
    assert params["method"] == "sslcst" and params["training_log"]["steps"] == 5


def test_command_line_limits_the_malloc_arenas_before_running(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(jointseg.cli, "limit_malloc_arenas", lambda *a: calls.append(a) or True)
    assert main(["segment", str(tmp_path / "missing.zarr"), str(tmp_path / "out.zarr"), "-q"]) == 2  # after the limit
    assert calls == [()]
