"""Fetch the wheel that carries the real demo data from PyPI, into a cache, and check it.

The Xenium crop ships inside the ``bidcell==1.0.3`` wheel (MIT). We download the wheel with
``pip download --no-deps`` (a package registry, reachable wherever pip works), verify its sha256,
and read the files straight out of the zip. bidcell itself is never installed or imported.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

logger = logging.getLogger("jointseg")

WHEEL_NAME = "bidcell-1.0.3-py3-none-any.whl"
WHEEL_SHA256 = "0df2864a7cf81e9e07a4b52b46ebb4848aaffdb7e454f555cdb9305d8798f7fb"
XENIUM_DIR = "data/dataset_xenium_breast1_small"
MARKERS_DIR = "data/sc_references"


def cache_dir() -> Path:
    """Cache folder: ``$JOINTSEG_DATA_DIR`` or ``~/.cache/jointseg``."""
    root = os.environ.get("JOINTSEG_DATA_DIR") or Path.home() / ".cache" / "jointseg"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def demo_wheel() -> zipfile.ZipFile:
    """The verified demo-data wheel as an open zip file, downloading it once if needed.

    Raises
    ------
    RuntimeError
        If the download fails (no registry access) or the checksum does not match.

    """
    target = cache_dir() / WHEEL_NAME
    if not target.exists():
        logger.info("Downloading the demo data wheel (bidcell==1.0.3, ~10 MB) into %s", target.parent)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "bidcell==1.0.3", "-d", str(target.parent), "-q"]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not target.exists():
            raise RuntimeError(
                "Could not download the demo data wheel bidcell==1.0.3 with pip "
                f"({result.stderr.strip().splitlines()[-1:] or 'no output'}). Use "
                "jg.datasets.xenium_breast(subset='small') for the crop shipped with jointseg."
            )
    digest = _sha256(target)
    if digest != WHEEL_SHA256:
        target.unlink()
        raise RuntimeError(f"Checksum mismatch for {WHEEL_NAME}: got {digest}; the file was removed.")
    return zipfile.ZipFile(target)
