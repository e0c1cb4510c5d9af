"""Does the image model, trained on the crop's stain and ST-derived nuclei, segment nuclei on images
it was not trained on, as well as the classical prior?

Run: ``.venv/bin/python benchmarks/image_transfer.py [--steps 800] [--seeds 0 1 2]``. The model trains on the left two
thirds of the real Xenium crop (as in ``image_classifier_real_crop.py``). It is then applied, with
the classical prior (``jg.pp.nuclei``) for comparison, to:

- the held-out right third resampled to other pixel sizes (0.106 and 0.425 um/px, declared through
  the image's scale so both methods know them) and re-contrasted (gamma 0.5 and 2; dimmed to a
  quarter with added noise). The reference nuclei are the classical nuclei of the untouched third,
  resampled with it; on the untouched third the prior is its own reference, so no prior row there.
- synthetic slides of every tissue regime at 0.2125 and 0.5 um/px, against their true nuclei.

Prints F1, precision and recall at IoU 0.5 per image and method; the image model's row with
``scale_by="auto"`` (the default: wide nuclei shrunk to the training width) and with
``scale_by="pixel_size"``. With several ``--seeds`` (each trains its own model and draws its own
synthetic slides and noise), one table per seed, then the mean and standard deviation of each
method's F1 per image.
"""

import argparse
import logging

import numpy as np
import pandas as pd
from skimage.transform import resize
from spatialdata import SpatialData
from spatialdata.models import Image2DModel
from spatialdata.transformations import Scale

import jointseg as jg

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=800)
parser.add_argument("--split", type=int, default=1200)
parser.add_argument("--seeds", type=int, nargs="+", default=[0])
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)
logging.getLogger("jointseg").setLevel(logging.ERROR)

crop = jg.datasets.xenium_breast()
jg.pp.nuclei(crop, image_key="morphology")
jg.seg.expand_nuclei(crop, image_key="morphology", points_key="transcripts")
jg.tl.pseudolabels(crop, markers="breast")
h, w = crop["morphology"].shape[-2:]
stain = np.asarray(crop["morphology"].values[0, :, args.split :], np.float32)
reference = np.asarray(crop["nuclei"].values[:, args.split :])
lo, hi = np.percentile(stain, [1, 99.9])
unit = np.clip((stain - lo) / (hi - lo), 0, 1)


def as_sdata(image: np.ndarray, pixel_size: float) -> SpatialData:
    scale = {"global": Scale([pixel_size, pixel_size], axes=("y", "x"))}
    return SpatialData(images={"morphology": Image2DModel.parse(image[None], dims=("c", "y", "x"),
                                                                transformations=scale)})  # fmt: skip


def transfer(seed: int) -> pd.DataFrame:
    """Train at ``seed`` and score the image model and the prior on every image; print the table."""
    model = jg.tl.train_image_classifier(
        crop, region=(0, h, 0, args.split), steps=args.steps, seed=seed, progress=False
    )
    px = model.pixel_size_um
    rows = []

    def score(image_name: str, sdata: SpatialData, truth: np.ndarray, *, prior: bool = True) -> None:
        predicted, _ = jg.tl.predict_image_classes(sdata, model)
        by_pixel_size, _ = jg.tl.predict_image_classes(sdata, model, scale_by="pixel_size")
        methods = {"image model": predicted, "image model, scaled by pixel size only": by_pixel_size}
        if prior:
            jg.pp.nuclei(sdata, image_key="morphology")
            methods["classical prior"] = np.asarray(sdata["nuclei"].values)
        for method, labels in methods.items():
            s = jg.metrics.instance_scores(labels, truth)
            rows.append({"seed": seed, "image": image_name, "method": method, "F1@0.5": s["f1"],
                         "precision": s["precision"], "recall": s["recall"]})  # fmt: skip

    rng = np.random.default_rng(seed)
    score("crop, held-out third (0.2125 um/px)", as_sdata(stain, px), reference, prior=False)
    for factor, name in ((2.0, "crop resampled to 0.106 um/px"), (0.5, "crop resampled to 0.425 um/px")):
        size = (round(stain.shape[0] * factor), round(stain.shape[1] * factor))
        image = resize(stain, size, order=1, preserve_range=True, anti_aliasing=factor < 1).astype(np.float32)
        truth = resize(reference, size, order=0, preserve_range=True, anti_aliasing=False).astype(np.int64)
        score(name, as_sdata(image, px / factor), truth)
    for name, image in (
        ("crop, gamma 0.5", unit**0.5 * (hi - lo) + lo),
        ("crop, gamma 2", unit**2 * (hi - lo) + lo),
        ("crop, dimmed 4x + noise", stain / 4 + rng.normal(0, 0.05 * (hi - lo), stain.shape)),
    ):
        score(name, as_sdata(image.astype(np.float32), px), reference)
    for regime in ("lymphoid", "epithelium", "stroma", "cultured", "tumour"):
        for pixel_size in (0.2125, 0.5):
            size = int(round((300.0 if regime == "cultured" else 150.0) / pixel_size))
            sdata = jg.datasets.synthetic(regime=regime, shape=(size, size), n_cells=1000, pixel_size=pixel_size,
                                          seed=seed)  # fmt: skip
            score(f"synthetic {regime} ({pixel_size} um/px)", sdata, np.asarray(sdata["true_nuclei"].values))
    rows = pd.DataFrame(rows)
    table = rows.pivot(index="image", columns="method", values=["F1@0.5", "precision", "recall"])
    print(f"\nseed {seed}, image model: {args.steps} steps on the crop's left two thirds ({px} um/px)")
    print(table.round(3).to_string(), flush=True)
    return rows


scores = pd.concat([transfer(seed) for seed in args.seeds])
if len(args.seeds) > 1:
    spread = scores.groupby(["image", "method"])["F1@0.5"].agg(["mean", "std"]).unstack("method")
    print(f"\nF1@0.5 over seeds {args.seeds}: mean and standard deviation per image and method")
    print(spread.round(3).to_string())
