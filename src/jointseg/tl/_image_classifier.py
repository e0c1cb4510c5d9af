"""An image-only nuclei classifier trained from transcriptome pseudolabels (Hirose/Nishimura).

A residual U-Net with HoVer-Net-style heads (nucleus probability, horizontal and vertical distance
to the nucleus centre, cell-type map) learns from stain patches, the nuclei masks of
:func:`jointseg.pp.nuclei` and the pseudolabels of :func:`jointseg.tl.pseudolabels` (``Unknown``
ignored); it then finds and classifies nuclei from the stain alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed
from skimage.transform import resize
from spatialdata import SpatialData
from torch.nn import functional as F

from jointseg._core.constants import INSTANCE_KEY, NUCLEI_KEY, TABLE_KEY
from jointseg._core.fields import inference_batch, sliding_window_average
from jointseg._core.trained_model import TrainedModel
from jointseg._core.training import fit
from jointseg._core.units import pixel_size_um
from jointseg._core.utils import image_2d, labels_2d, resolve_key, sampled_percentiles, select_device
from jointseg.models import ResidualUNet, UNetConfig

IGNORE = -1


@dataclass
class ImageClassifierModel(TrainedModel):
    """A trained image-only nuclei classifier.

    Parameters
    ----------
    network
        Residual U-Net with outputs: nucleus logit, horizontal and vertical distance maps, then
        one logit per class (background first).
    classes
        Class names (``classes[0]`` is the background).
    lo, hi
        The training stain's 1st and 99th percentiles, mapped to 0 and 1 (prediction maps each
        image's own percentiles the same way, so a brighter or dimmer microscope does not matter).
    pixel_size_um
        Pixel size of the training image in microns (``None``: unknown); images of another pixel
        size are resampled to it before prediction.
    training_log
        Loss per step and the training settings.
    device
        Where the network runs.

    """

    FORMAT: ClassVar[str] = "jointseg.imageclassifier"
    KIND: ClassVar[str] = "image classifier"
    NETWORK: ClassVar[type] = ResidualUNet
    CONFIG: ClassVar[type] = UNetConfig

    network: ResidualUNet
    classes: list[str]
    lo: float
    hi: float
    pixel_size_um: float | None = None

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 3 + n_classes, h, w)``: nucleus probability, h and v maps, class probabilities."""
        out = self.forward(torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device))
        return torch.cat([torch.sigmoid(out[:, :1]), out[:, 1:3], torch.softmax(out[:, 3:], 1)], 1).cpu().numpy()


def _scaled_stain(stain, region: tuple[int, int, int, int], lo: float, hi: float) -> np.ndarray:
    y0, y1, x0, x1 = region
    return np.clip((np.asarray(stain[y0:y1, x0:x1], np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)


def hover_maps(nuclei: np.ndarray) -> np.ndarray:
    """HoVer-Net targets ``(2, h, w)``: per nucleus pixel, its horizontal and vertical offset from
    the nucleus centroid, divided by the nucleus's largest offset on that axis (so in [-1, 1]).

    Examples
    --------
    >>> nuc = np.zeros((1, 5), int); nuc[0, 1:4] = 1
    >>> hover_maps(nuc)[0].tolist()
    [[0.0, -1.0, 0.0, 1.0, 0.0]]

    """
    out = np.zeros((2, *nuclei.shape), np.float32)
    ids = nuclei.ravel()
    inside = ids > 0
    if not inside.any():
        return out
    yy, xx = np.indices(nuclei.shape)
    n = int(ids.max()) + 1
    count = np.bincount(ids[inside], minlength=n).astype(np.float64)
    for axis, coord in ((0, xx.ravel()), (1, yy.ravel())):
        centre = np.bincount(ids[inside], weights=coord[inside], minlength=n) / np.maximum(count, 1)
        offset = coord[inside] - centre[ids[inside]]
        scale = np.zeros(n)
        np.maximum.at(scale, ids[inside], np.abs(offset))
        out[axis].ravel()[np.flatnonzero(inside)] = offset / np.maximum(scale[ids[inside]], 1e-6)
    return out


def nuclei_from_maps(
    probability: np.ndarray,
    hv: np.ndarray,
    *,
    min_area: int,
    edge_threshold: float = 0.5,
    centre_radius: float = 0.5,
) -> np.ndarray:
    """HoVer-Net post-processing: nucleus mask ``probability > 0.5``, split where the h/v maps change
    sharply (their Sobel gradients, scaled to [0, 1], above ``edge_threshold``), by a marker
    watershed; objects below ``min_area`` are dropped and the rest numbered ``1..n``. Inside a
    nucleus of radius ``r`` px the scaled gradient is about ``2.4 / r`` (0.4 at ``r = 6``), so in
    large nuclei the edges between touching ones are weak: markers are further kept to the central
    part of each nucleus, where the predicted offset to its centre ``hypot(h, v)`` is below
    ``centre_radius`` (offsets are scaled by each nucleus's extent, so this holds at any size).

    Examples
    --------
    >>> nuc = np.zeros((16, 30), int); nuc[2:14, 2:14] = 1; nuc[2:14, 14:26] = 2  # two touching nuclei
    >>> int(nuclei_from_maps((nuc > 0).astype(float), hover_maps(nuc), min_area=10).max())
    2

    """
    mask = probability > 0.5
    sobel = []
    for axis, m in ((1, hv[0]), (0, hv[1])):
        g = np.abs(ndi.sobel(m, axis=axis))
        sobel.append((g - g.min()) / max(g.max() - g.min(), 1e-6))
    edge = np.maximum(*sobel) * mask
    markers, _ = ndi.label(mask & (edge < edge_threshold) & (np.hypot(hv[0], hv[1]) < centre_radius))
    sizes = np.bincount(markers.ravel())
    markers[sizes[markers] < max(min_area // 4, 1)] = 0
    cells = watershed(edge, markers, mask=mask)
    sizes = np.bincount(cells.ravel())
    cells[sizes[cells] < min_area] = 0
    return relabel_sequential(cells)[0]


def _targets(nuclei: np.ndarray, class_of: np.ndarray) -> np.ndarray:
    """``(4, h, w)`` float targets: foreground, h, v, class (background 0, ignored -1)."""
    fg = (nuclei > 0).astype(np.float32)
    cls = np.where(nuclei > 0, class_of[np.minimum(nuclei, len(class_of) - 1)], 0).astype(np.float32)
    return np.concatenate([fg[None], hover_maps(nuclei), cls[None]])


def class_weights(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Median-frequency balancing (Eigen & Fergus 2015): class ``c`` weighs ``median(f) / f_c``, with
    ``f`` the pixel frequencies of the classes present (ignored pixels, ``-1``, left out); absent
    classes weigh 0.

    Examples
    --------
    >>> class_weights(np.array([0, 0, 0, 0, 1, 1, 2, -1]), 4).tolist()
    [0.5, 1.0, 2.0, 0.0]

    """
    counts = np.bincount(classes[classes >= 0].astype(np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = np.median(counts[present]) / counts[present]
    return weights


def _loss(out: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    fg = target[:, 0]
    bce = F.binary_cross_entropy_with_logits(out[:, 0], fg)
    mse = (((out[:, 1:3] - target[:, 1:3]) ** 2).sum(1) * fg).sum() / fg.sum().clamp(min=1)
    ce = F.cross_entropy(out[:, 3:], target[:, 3].long(), weight=weights, ignore_index=IGNORE)
    return bce + mse + (ce if torch.isfinite(ce) else 0.0)


def _augment_intensity(patch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Another microscope's look for a [0, 1] stain patch: gamma in [0.5, 2], contrast in [0.5, 1.5],
    an offset in [-0.1, 0.1] and Gaussian noise up to 0.1 (as cellpose and StarDist augment).
    """
    gamma = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    out = patch.clamp(min=0) ** gamma * rng.uniform(0.5, 1.5) + rng.uniform(-0.1, 0.1)
    return out + torch.from_numpy(rng.normal(0, rng.uniform(0, 0.1), patch.shape).astype(np.float32))


def train_image_classifier(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    nuclei_key: str = NUCLEI_KEY,
    table_key: str = TABLE_KEY,
    key: str = "cell_type",
    region: tuple[int, int, int, int] | None = None,
    widths: tuple[int, ...] = (16, 32, 64, 128),
    steps: int = 400,
    batch_size: int = 8,
    crop: int = 128,
    lr: float = 2e-3,
    device: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> ImageClassifierModel:
    """Train the image-only classifier on the stain, the nuclei and the table's cell types.

    Each nucleus takes the class of the cell it belongs to (the table's ``nucleus_id`` link, from a
    segmentation with nuclei); ``Unknown`` cells' nuclei are ignored by the class loss but still
    teach nucleus detection. Loss: BCE on the nucleus probability, MSE of the h/v maps on nuclei,
    cross-entropy on the class map with median-frequency class weights (:func:`class_weights`: rare
    classes count as much as common ones); AdamW, one-cycle schedule, random crops with rotations,
    flips and random gamma, contrast, offset and noise (so that other microscopes' stains look
    familiar), inside ``region`` (``(y0, y1, x0, x1)`` pixels; default the whole image), so another
    region can be held out.

    Returns
    -------
    The trained :class:`ImageClassifierModel`.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=6)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.expand_nuclei(sdata)
    >>> sdata["table"].obs["cell_type"] = pd.Categorical(["A", "B"] * 3)[: sdata["table"].n_obs]
    >>> model = jg.tl.train_image_classifier(sdata, steps=2, crop=64, widths=(8, 16), progress=False)
    >>> model.classes
    ['background', 'A', 'B']

    """
    image_key = resolve_key(sdata, "images", image_key)
    table = sdata[table_key]
    if key not in table.obs or "nucleus_id" not in table.obs:
        raise KeyError(
            f"Table {table_key!r} needs obs[{key!r}] (jg.tl.pseudolabels) and obs['nucleus_id'] (a segmentation "
            "run with nuclei)."
        )
    device = select_device(device)
    stain_da = image_2d(sdata, image_key).data
    h, w = (int(s) for s in stain_da.shape)
    y0, y1, x0, x1 = region or (0, h, 0, w)
    lo, hi = (float(v) for v in sampled_percentiles(stain_da, [1, 99]))
    stain = _scaled_stain(stain_da, (y0, y1, x0, x1), lo, hi)
    nuclei = np.asarray(labels_2d(sdata, nuclei_key).data[y0:y1, x0:x1]).astype(np.int64)
    types = table.obs[key].astype(str)
    classes = ["background", *sorted(set(types) - {"Unknown"})]
    code = {c: i for i, c in enumerate(classes)}
    class_of = np.full(int(max(nuclei.max(), table.obs["nucleus_id"].max())) + 1, IGNORE)
    linked = table.obs["nucleus_id"].to_numpy() > 0
    class_of[table.obs["nucleus_id"].to_numpy()[linked]] = [code.get(t, IGNORE) for t in types[linked]]
    targets = torch.from_numpy(_targets(nuclei, class_of))
    weights = torch.from_numpy(class_weights(targets[3].numpy().ravel(), len(classes))).float().to(device)
    image = torch.from_numpy(stain)[None]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = ResidualUNet(UNetConfig(in_channels=1, widths=widths, out_channels=3 + len(classes))).to(device)
    crop = min(crop, y1 - y0, x1 - x0) // network.multiple * network.multiple

    def step_loss() -> torch.Tensor:
        xs, ts = [], []
        for _ in range(batch_size):
            y, x = int(rng.integers(y1 - y0 - crop + 1)), int(rng.integers(x1 - x0 - crop + 1))
            k = int(rng.integers(4))
            xi, ti = image[:, y : y + crop, x : x + crop], targets[:, y : y + crop, x : x + crop].clone()
            for _ in range(k):  # rotating the h/v maps with the image: (h, v) -> (v, -h)
                xi, ti = torch.rot90(xi, 1, (1, 2)), torch.rot90(ti, 1, (1, 2))
                ti[1], ti[2] = ti[2].clone(), -ti[1]
            xs.append(_augment_intensity(xi, rng))
            ts.append(ti)
        return _loss(network(torch.stack(xs).to(device)), torch.stack(ts).to(device), weights)

    losses = fit(network, step_loss, steps=steps, lr=lr, weight_decay=1e-5, device=device, desc="image classifier",
                 progress=progress).losses  # fmt: skip
    pixel_size = pixel_size_um(sdata, image_key)
    log = {"losses": losses, "region": [y0, y1, x0, x1], "steps": steps, "crop": crop, "seed": seed,
           "class_weights": dict(zip(classes, weights.tolist(), strict=True))}  # fmt: skip
    return ImageClassifierModel(
        network=network, classes=classes, lo=lo, hi=hi, pixel_size_um=pixel_size, training_log=log, device=device
    )


def predict_image_classes(
    sdata: SpatialData,
    model: ImageClassifierModel,
    *,
    image_key: str | None = None,
    region: tuple[int, int, int, int] | None = None,
    min_area_px: int = 30,
    window: int = 256,
    stride: int = 224,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Find and classify nuclei from the stain alone in ``region`` (default: the whole image).

    When the image's pixel size (:func:`jointseg.pp.set_units`; estimated from the nuclei when no
    units are known) differs from the training image's by more than 5%, the stain is resampled to
    the model's pixel size, nuclei are found there (``min_area_px`` counts pixels of the model's
    size) and their labels are resampled back, so a model trained at 0.2125 um/px segments a
    0.108 or 0.5 um/px image at the scale it learnt.

    Returns the nucleus labels of the region and a table with, per nucleus, its ``class`` (the
    majority class of the type map over it), the mean class probability, and its centroid in
    image pixels.
    """
    image_key = resolve_key(sdata, "images", image_key)
    stain_da = image_2d(sdata, image_key).data
    h, w = (int(s) for s in stain_da.shape)
    y0, y1, x0, x1 = region or (0, h, 0, w)
    lo, hi = (float(v) for v in sampled_percentiles(stain_da, [1, 99]))  # each image by its own range
    stain = _scaled_stain(stain_da, (y0, y1, x0, x1), lo, hi)
    zoom = 1.0 if model.pixel_size_um is None else pixel_size_um(sdata, image_key) / model.pixel_size_um
    if abs(zoom - 1) > 0.05:
        size = (max(round(stain.shape[0] * zoom), 1), max(round(stain.shape[1] * zoom), 1))
        stain = resize(stain, size, order=1, preserve_range=True, anti_aliasing=zoom < 1).astype(np.float32)
    fields = sliding_window_average(
        stain[None], model.predict, window=window, stride=stride, batch_size=inference_batch(model.device)
    )
    nuclei = nuclei_from_maps(fields[0], fields[1:3], min_area=min_area_px)
    ids = nuclei.ravel()
    inside = ids > 0
    n = int(ids.max()) + 1
    count = np.bincount(ids[inside], minlength=n)
    mean = np.stack(
        [
            np.bincount(ids[inside], weights=p, minlength=n)
            for p in fields[3:].reshape(len(model.classes), -1)[:, inside]
        ]
    ) / np.maximum(count, 1)
    if nuclei.shape != (y1 - y0, x1 - x0):
        nuclei = resize(nuclei, (y1 - y0, x1 - x0), order=0, preserve_range=True, anti_aliasing=False).astype(np.int64)
        ids, inside = nuclei.ravel(), nuclei.ravel() > 0
        count = np.bincount(ids[inside], minlength=n)
    present = np.unique(ids[inside])
    best = mean[1:, present].argmax(axis=0) + 1  # a nucleus is never background
    yy, xx = np.indices(nuclei.shape)
    frame = pd.DataFrame(
        {
            INSTANCE_KEY: present,
            "class": pd.Categorical([model.classes[b] for b in best], categories=model.classes[1:]),
            "probability": mean[best, present],
            "y": np.bincount(ids[inside], weights=yy.ravel()[inside], minlength=n)[present] / count[present] + y0,
            "x": np.bincount(ids[inside], weights=xx.ravel()[inside], minlength=n)[present] / count[present] + x0,
        }
    )
    return nuclei, frame
