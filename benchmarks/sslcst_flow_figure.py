"""Figure of SSL-CST on a window of the real Xenium crop: what the network predicts and the cells
traced from it.

Run: ``.venv/bin/python benchmarks/sslcst_flow_figure.py [--model sslcst.pt]`` (without ``--model``
it trains SSL-CST with its defaults on the crop first, ~3 min on 2 cores). Writes
``docs/_static/sslcst_flow.png``: the stain with nuclei, the foreground probability with the
predicted directions (after the nucleus prior), and the cells with the transcripts.
"""

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import jointseg as jg
from jointseg._core.genes import gene_lookup
from jointseg._core.transcripts import build_transcript_index
from jointseg.models import SSLCSTModel
from jointseg.seg.sslcst.infer import _fields_block
from jointseg.seg.sslcst.tokens import nucleus_centres

parser = argparse.ArgumentParser()
parser.add_argument("--model", default=None)
parser.add_argument("--out", default="docs/_static/sslcst_flow.png")
args = parser.parse_args()

sdata = jg.datasets.xenium_breast()
jg.pp.nuclei(sdata, image_key="morphology")
model_path = args.model or Path(tempfile.mkdtemp()) / "sslcst.pt"
jg.seg.sslcst(sdata, model=args.model, save_model=None if args.model else model_path, progress=False)
model = SSLCSTModel.load(model_path)
shape = tuple(int(s) for s in sdata["morphology"].shape[-2:])
b = model.bin_size
grid = tuple(-(-s // b) for s in shape)
y0, x0, size = 380, 500, 120  # a window of bins (51 um)
index = build_transcript_index(sdata, "transcripts", "morphology", shape=shape)
centres = nucleus_centres(sdata["nuclei"].data, b)
params = sdata["table"].uns["jointseg"]["cell_labels"]
prior = params["prior_radius_um"] / params["bin_um"]
fields = _fields_block(index, model, gene_lookup(index, model.genes), centres, (y0, y0 + size, x0, x0 + size), grid,
                       prior, params["stride"])  # fmt: skip

py0, px0, extent = y0 * b, x0 * b, size * b
region = (py0, py0 + extent, px0, px0 + extent)
fig, axes = plt.subplots(1, 3, figsize=(18, 6.3))
jg.pl.segmentation(sdata, image_key="morphology", labels_key="nuclei", region=region, ax=axes[0])
axes[0].set_title("stain and nuclei")
axes[1].imshow(fields[0], cmap="magma", vmin=0, vmax=1, extent=(px0, px0 + extent, py0 + extent, py0))
step = 4
yy, xx = np.mgrid[0:size:step, 0:size:step]
keep = fields[0][yy, xx] > 0.1
axes[1].quiver(px0 + (xx[keep] + 0.5) * b, py0 + (yy[keep] + 0.5) * b, fields[2][yy, xx][keep],
               fields[1][yy, xx][keep], color="cyan", angles="xy", scale=40, width=0.003)  # fmt: skip
axes[1].set_title("foreground probability and predicted direction to the cell centre")
axes[1].set_aspect("equal")
jg.pl.segmentation(
    sdata, image_key="morphology", nuclei_key="nuclei", points_key="transcripts", region=region, ax=axes[2]
)
axes[2].set_title("SSL-CST cells (red), nuclei (cyan), transcripts")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
fig.savefig(args.out, dpi=100)
print(f"wrote {args.out}")
