import logging

import pytest

import jointseg as jg
from jointseg._core.method_run import start_run
from jointseg.models import GeneSegNetModel, UNetConfig

KEYS = {"method": "demo", "image_key": None, "points_key": None, "nuclei_key": "nuclei"}


def test_start_run_checks_before_any_work(synth):
    with pytest.raises(KeyError, match=r"jg\.pp\.nuclei"):
        start_run(synth, **KEYS, outputs=["cells"])
    run = start_run(synth, **KEYS, outputs=None, needs_nuclei=False)  # training-like: writes nothing
    assert run.index.shape == tuple(synth["morphology"].shape[1:]) and run.title == "demo"
    jg.pp.nuclei(synth, image_key="morphology")
    with pytest.raises(ValueError, match="already exists"):
        start_run(synth, **KEYS, outputs=["truth"])
    with pytest.raises(ValueError, match="steps must be >= 1"):
        start_run(synth, **KEYS, outputs=["cells"], at_least_one={"steps": 0})
    run = start_run(synth, **KEYS, outputs=["cells"])
    assert run.nuclei().shape == run.stain().shape and run.pixel_size_um == pytest.approx(0.2125)


def test_load_model_warns_about_another_pixel_size(synth, tmp_path, caplog):
    run = start_run(synth, **KEYS, outputs=None, needs_nuclei=False)
    assert run.load_model(None, GeneSegNetModel) is None
    model = GeneSegNetModel.new(UNetConfig(widths=(8, 16)), sigma_um=1.4, pixel_size_um=0.5)
    model.save(tmp_path / "m.pt")
    with caplog.at_level(logging.WARNING, logger="jointseg"):
        loaded = run.load_model(str(tmp_path / "m.pt"), GeneSegNetModel)
    assert isinstance(loaded, GeneSegNetModel) and loaded.device == run.device
    assert "trained at 0.500 um/px; this image has 0.212 um/px" in caplog.text
