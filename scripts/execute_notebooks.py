"""Execute notebooks in place (in a scratch directory), drop their stderr streams, and save the figures of cells tagged
``figure:<name>`` as docs/_static/<name>.png, so that the README shows figures the notebook made.

    .venv/bin/python scripts/execute_notebooks.py notebooks/tutorial.ipynb
"""

import base64
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

STATIC = Path(__file__).parents[1] / "docs" / "_static"

for name in sys.argv[1:]:
    path = Path(name)
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        client = NotebookClient(
            notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": scratch}}
        )
        client.execute()
    for cell in notebook.cells:  # progress bars and library warnings: useful live, noise in the docs
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    nbformat.write(notebook, path)
    print(f"{path}: executed in {time.perf_counter() - start:.0f} s")
    for cell in notebook.cells:
        tags = [t for t in cell.metadata.get("tags", []) if t.startswith("figure:")]
        images = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        if tags and images:
            target = STATIC / f"{tags[0].split(':', 1)[1]}.png"
            target.write_bytes(base64.b64decode(images[-1]))
            print(f"  figure -> {target}")
