import numpy as np
import pytest
import torch

from jointseg.models import SegJointGeneModel, SemanticConfig


def _model() -> SegJointGeneModel:
    config = SemanticConfig(n_genes=3, n_types=2, widths=(8, 16))
    model = SegJointGeneModel.new(config, genes=["a", "b", "c"], types=["t1", "t2"], bin_size=4, pixel_size_um=0.2)
    model.cid = np.arange(6, dtype=float).reshape(2, 3)
    model.training_log = {"rounds": [1, 2]}
    return model


def test_every_field_round_trips(tmp_path):
    model = _model()
    model.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert {"format", "version", "config", "state_dict", "genes", "types", "cid", "training_log"} <= set(blob)
    loaded = SegJointGeneModel.load(tmp_path / "m.pt")
    assert loaded.genes == model.genes and loaded.types == model.types and loaded.bin_size == 4
    np.testing.assert_array_equal(loaded.cid, model.cid)
    assert loaded.training_log == model.training_log and not loaded.network.training
    for a, b in zip(model.network.state_dict().values(), loaded.network.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_other_files_and_newer_formats_are_refused(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a jointseg SegJointGene model file"):
        SegJointGeneModel.load(tmp_path / "other.pt")
    model = _model()
    model.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    torch.save({**blob, "version": SegJointGeneModel.FORMAT_VERSION + 1}, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match="Upgrade jointseg"):
        SegJointGeneModel.load(tmp_path / "newer.pt")
