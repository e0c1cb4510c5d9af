"""A killed run resumes from its finished blocks; the input store is never touched."""

import hashlib
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import jointseg as jg
from jointseg.cli import main


def _digest(store: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in store.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(store)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _done_blocks(checkpoint: Path) -> int:
    return sum(1 for _ in checkpoint.glob("*.zarr/jointseg-done/*"))


def test_checkpoint_resumes_and_is_removed(tmp_path, caplog):
    reference = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    jg.pp.nuclei(reference, image_key="morphology", block_size=64)
    sdata = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    with pytest.raises(RuntimeError, match="crash"), jg.io.checkpoint(tmp_path / "ckpt"):
        jg.pp.nuclei(sdata, image_key="morphology", block_size=64)
        raise RuntimeError("crash after the nuclei")
    assert _done_blocks(tmp_path / "ckpt") == 16  # kept after a failure
    for marker in sorted((tmp_path / "ckpt").glob("*.zarr/jointseg-done/*"))[:5]:
        marker.unlink()  # as if those blocks were being written when the run died
    again = jg.datasets.synthetic(shape=(256, 256), n_cells=20)
    with caplog.at_level(logging.INFO, logger="jointseg"), jg.io.checkpoint(tmp_path / "ckpt"):
        jg.pp.nuclei(again, image_key="morphology", block_size=64)
    assert "11 of 16 blocks already done, computing 5" in caplog.text
    np.testing.assert_array_equal(again["nuclei"].values, reference["nuclei"].values)
    assert not (tmp_path / "ckpt").exists()  # removed after success; the labels were kept in memory


def test_killed_cli_run_resumes(tmp_path, caplog):
    source = tmp_path / "in.zarr"
    jg.io.write_zarr(jg.datasets.synthetic(shape=(640, 640), n_cells=120, seed=1), source)
    before = _digest(source)
    args = ["segment", str(source), str(tmp_path / "ref.zarr"), "--block-size", "64"]
    assert main(args) == 0
    reference = jg.io.read_zarr(tmp_path / "ref.zarr")

    out = tmp_path / "out.zarr"
    checkpoint = Path(f"{out}.jointseg-checkpoint")
    command = [sys.executable, "-m", "jointseg.cli", "segment", str(source), str(out), "--block-size", "64"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _done_blocks(checkpoint) < 40 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    finished = _done_blocks(checkpoint)
    assert 40 <= finished < 200 and not out.exists()  # killed mid-run: no output, blocks kept
    print(f"killed with {finished} blocks finished")

    with caplog.at_level(logging.INFO, logger="jointseg"):
        assert main([*command[3:], "--resume"]) == 0
    assert "blocks already done" in caplog.text
    result = jg.io.read_zarr(out)
    for key in ("nuclei", "cell_labels"):
        np.testing.assert_array_equal(result[key].values, reference[key].values)
    assert result["table"].n_obs == reference["table"].n_obs
    assert not checkpoint.exists()
    assert _digest(source) == before  # the input store is intact
