"""An image-only nuclei classifier trained from transcriptome pseudolabels (Hirose/Nishimura).

A residual U-Net with three heads (nucleus probability, each nucleus pixel's depth in its nucleus as
in Naylor et al. 2018's DIST maps, and a cell-type map) learns from stain patches, the nuclei masks of
:func:`jointseg.pp.nuclei` and the pseudolabels of :func:`jointseg.tl.pseudolabels` (``Unknown``
ignored); it then finds and classifies nuclei from the stain alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries, relabel_sequential, watershed
from skimage.transform import resize
from spatialdata import SpatialData
from torch.nn import functional as F

from jointseg._core.constants import INSTANCE_KEY, NUCLEI_KEY, TABLE_KEY
from jointseg._core.fields import inference_batch, sliding_window_average
from jointseg._core.masks import max_per_label
from jointseg._core.nucleus_scale import measure_nucleus_width
from jointseg._core.trained_model import TrainedModel
from jointseg._core.training import fit
from jointseg._core.units import pixel_size_um
from jointseg._core.utils import image_2d, labels_2d, resolve_key, sampled_percentiles, select_device
from jointseg.models import ResidualUNet, UNetConfig

IGNORE = -1

logger = logging.getLogger("jointseg")


@dataclass
class ImageClassifierModel(TrainedModel):
    """A trained image-only nuclei classifier.

    Parameters
    ----------
    network
        Residual U-Net with outputs: nucleus logit, depth logit (:func:`depth_maps`), then one
        logit per class (background first).
    classes
        Class names (``classes[0]`` is the background).
    lo, hi
        The training stain's 1st and 99th percentiles, mapped to 0 and 1 (prediction maps each
        image's own percentiles the same way, so a brighter or dimmer microscope does not matter).
    pixel_size_um
        Pixel size of the training image in microns (``None``: unknown).
    nucleus_width_px
        Typical nucleus width of the training stain in pixels
        (:func:`~jointseg._core.nucleus_scale.measure_nucleus_width`; ``None``: not measured).
        Images whose nuclei are wider or narrower are resampled to it before prediction.
    training_log
        Loss per step and the training settings.
    device
        Where the network runs.

    """

    FORMAT: ClassVar[str] = "jointseg.imageclassifier"
    KIND: ClassVar[str] = "image classifier"
    #: Version 2: a depth map replaced HoVer-Net's horizontal and vertical maps.
    FORMAT_VERSION: ClassVar[int] = 2
    MIN_FORMAT_VERSION: ClassVar[int] = 2
    NETWORK: ClassVar[type] = ResidualUNet
    CONFIG: ClassVar[type] = UNetConfig

    network: ResidualUNet
    classes: list[str]
    lo: float
    hi: float
    pixel_size_um: float | None = None
    nucleus_width_px: float | None = None

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 2 + n_classes, h, w)``: nucleus probability, depth, class probabilities."""
        out = self.forward(torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device))
        return torch.cat([torch.sigmoid(out[:, :2]), torch.softmax(out[:, 2:], 1)], 1).cpu().numpy()


def _scaled_stain(stain, region: tuple[int, int, int, int], lo: float, hi: float) -> np.ndarray:
    y0, y1, x0, x1 = region
    return np.clip((np.asarray(stain[y0:y1, x0:x1], np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)


def depth_maps(nuclei: np.ndarray) -> np.ndarray:
    """Per nucleus pixel, its distance to the nucleus's edge (an edge with a touching nucleus
    included) divided by the largest in that nucleus: 1 at the centre, near 0 at the edge, 0
    outside (the DIST map of Naylor et al. 2018). Scaled per nucleus, it has the same shape at any
    nucleus size, and it dips to 0 wherever two nuclei touch.

    Examples
    --------
    >>> nuc = np.zeros((7, 7), int); nuc[1:6, 1:6] = 1
    >>> depth_maps(nuc)[3].tolist()  # the nucleus's outermost pixels count as its edge
    [0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0]

    """
    inner = (nuclei > 0) & ~find_boundaries(nuclei, mode="inner")
    depth = ndi.distance_transform_edt(inner)
    deepest = max_per_label(depth, nuclei, int(nuclei.max()) + 1)
    return np.where(nuclei > 0, depth / np.maximum(deepest[nuclei], 1e-6), 0).astype(np.float32)


def nuclei_from_depth(probability: np.ndarray, depth: np.ndarray, *, min_area: int, level: float = 0.5) -> np.ndarray:
    """Nuclei from the predicted maps: the mask ``probability > 0.5``, one marker per connected
    part where the predicted depth exceeds ``level`` (each nucleus's central half when
    ``level = 0.5``), grown over the mask by a watershed of the depth. Markers below an eighth and
    objects below ``min_area`` pixels are dropped; the rest are numbered ``1..n``.

    Measured on the held-out third of the crop (``benchmarks/image_classifier_real_crop.py``),
    these markers split touching nuclei better than HoVer-Net's Sobel edges of h/v maps, whose
    gradient inside a nucleus of radius ``r`` px is only ``~2.4 / r``.

    Examples
    --------
    >>> nuc = np.zeros((16, 30), int); nuc[2:14, 2:14] = 1; nuc[2:14, 14:26] = 2  # two touching nuclei
    >>> int(nuclei_from_depth((nuc > 0).astype(float), depth_maps(nuc), min_area=10).max())
    2

    """
    mask = probability > 0.5
    markers, _ = ndi.label(mask & (depth > level))
    sizes = np.bincount(markers.ravel())
    markers[sizes[markers] < max(min_area // 8, 1)] = 0
    cells = watershed(-depth, markers, mask=mask)
    sizes = np.bincount(cells.ravel())
    cells[sizes[cells] < min_area] = 0
    return relabel_sequential(cells)[0]


def _targets(nuclei: np.ndarray, class_of: np.ndarray) -> np.ndarray:
    """``(3, h, w)`` float targets: foreground, depth, class (background 0, ignored -1)."""
    fg = (nuclei > 0).astype(np.float32)
    cls = np.where(nuclei > 0, class_of[np.minimum(nuclei, len(class_of) - 1)], 0).astype(np.float32)
    return np.stack([fg, depth_maps(nuclei), cls])


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
    mse = (((torch.sigmoid(out[:, 1]) - target[:, 1]) ** 2) * fg).sum() / fg.sum().clamp(min=1)
    ce = F.cross_entropy(out[:, 2:], target[:, 2].long(), weight=weights, ignore_index=IGNORE)
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
    steps: int = 800,
    batch_size: int = 8,
    crop: int = 128,
    lr: float = 2e-3,
    stretch: float = 2.0,
    device: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> ImageClassifierModel:
    """Train the image-only classifier on the stain, the nuclei and the table's cell types.

    Each nucleus takes the class of the cell it belongs to (the table's ``nucleus_id`` link, from a
    segmentation with nuclei); ``Unknown`` cells' nuclei are ignored by the class loss but still
    teach nucleus detection. Loss: BCE on the nucleus probability, MSE of the depth map on nuclei,
    cross-entropy on the class map with median-frequency class weights (:func:`class_weights`: rare
    classes count as much as common ones); AdamW, one-cycle schedule, random crops with rotations,
    and random gamma, contrast, offset and noise (so that other microscopes' stains look
    familiar), each stretched by independent factors in ``[1 / stretch, stretch]`` along y and x
    (so that larger, smaller and elongated nuclei look familiar; ``stretch=1`` turns it off), inside
    ``region`` (``(y0, y1, x0, x1)`` pixels; default the whole image), so another
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
    if stretch < 1:
        raise ValueError(f"stretch must be at least 1 (no stretching), not {stretch}.")
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
    weights = torch.from_numpy(class_weights(targets[2].numpy().ravel(), len(classes))).float().to(device)
    image = torch.from_numpy(stain)[None]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = ResidualUNet(UNetConfig(in_channels=1, widths=widths, out_channels=2 + len(classes))).to(device)
    crop = min(crop, y1 - y0, x1 - x0) // network.multiple * network.multiple

    def step_loss() -> torch.Tensor:
        xs, ts = [], []
        for _ in range(batch_size):
            sy, sx = np.exp(rng.uniform(-np.log(stretch), np.log(stretch), 2))
            cy, cx = min(round(crop / sy), y1 - y0), min(round(crop / sx), x1 - x0)
            y, x = int(rng.integers(y1 - y0 - cy + 1)), int(rng.integers(x1 - x0 - cx + 1))
            k = int(rng.integers(4))
            xi, ti = image[:, y : y + cy, x : x + cx], targets[:, y : y + cy, x : x + cx]
            if (cy, cx) != (crop, crop):
                xi = F.interpolate(xi[None], size=(crop, crop), mode="bilinear", antialias=True)[0]
                ti = F.interpolate(ti[None], size=(crop, crop), mode="nearest")[0]
            xi, ti = torch.rot90(xi, k, (1, 2)), torch.rot90(ti, k, (1, 2))
            xs.append(_augment_intensity(xi, rng))
            ts.append(ti)
        return _loss(network(torch.stack(xs).to(device)), torch.stack(ts).to(device), weights)

    losses = fit(network, step_loss, steps=steps, lr=lr, weight_decay=1e-5, device=device, desc="image classifier",
                 progress=progress).losses  # fmt: skip
    pixel_size = pixel_size_um(sdata, image_key)
    width = measure_nucleus_width(stain_da[y0:y1, x0:x1]).width_px
    log = {"losses": losses, "region": [y0, y1, x0, x1], "steps": steps, "crop": crop, "seed": seed,
           "class_weights": dict(zip(classes, weights.tolist(), strict=True))}  # fmt: skip
    return ImageClassifierModel(
        network=network,
        classes=classes,
        lo=lo,
        hi=hi,
        pixel_size_um=pixel_size,
        nucleus_width_px=float(width) if np.isfinite(width) else None,
        training_log=log,
        device=device,
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
    scale_by: Literal["auto", "nucleus_width", "pixel_size"] = "auto",
) -> tuple[np.ndarray, pd.DataFrame]:
    """Find and classify nuclei from the stain alone in ``region`` (default: the whole image).

    The network sees nuclei at the scale it learnt: the stain is resampled by ``zoom`` (when it
    is more than 5% from 1), nuclei are found there (``min_area_px`` counts pixels of that scale)
    and their labels are resampled back. ``scale_by`` sets ``zoom``:

    - ``"pixel_size"``: the ratio of the image's pixel size (:func:`jointseg.pp.set_units`) to the
      training image's, so a model trained at 0.2125 um/px sees a 0.108 or 0.5 um/px image at the
      scale it learnt.
    - ``"nucleus_width"``: the ratio of the training stain's nucleus width to the region's, both
      measured on the stain (:func:`~jointseg._core.nucleus_scale.measure_nucleus_width`), as
      cellpose rescales images to its training diameter.
    - ``"auto"`` (default): by pixel size, but nuclei still wider than twice the training ones are
      shrunk to their width: nuclei of cultured cells, 3 times wider than in tissue, would be split
      by a network that never saw them whole. Below that factor the measurement's own spread would
      add noise, not scale: two parts of the Xenium crop measure 25.3 and 28.3 px, and the same
      part re-contrasted (gamma 0.5 or 2, dimmed) 0.6-1.3 times its plain width.

    Without a measurable nucleus, the pixel sizes decide.

    Returns the nucleus labels of the region and a table with, per nucleus, its ``class`` (the
    majority class of the type map over it), the mean class probability, and its centroid in
    image pixels.

    Examples
    --------
    >>> import jointseg as jg
    >>> sdata = jg.datasets.synthetic(shape=(128, 128), n_cells=6)
    >>> jg.pp.nuclei(sdata, image_key="morphology")
    >>> jg.seg.expand_nuclei(sdata)
    >>> sdata["table"].obs["cell_type"] = pd.Categorical(["A", "B"] * 3)[: sdata["table"].n_obs]
    >>> model = jg.tl.train_image_classifier(sdata, steps=2, crop=64, widths=(8, 16), progress=False)
    >>> nuclei, frame = jg.tl.predict_image_classes(sdata, model, window=64, stride=48)
    >>> nuclei.shape, list(frame.columns)
    ((128, 128), ['cell_id', 'class', 'probability', 'y', 'x'])

    """
    image_key = resolve_key(sdata, "images", image_key)
    stain_da = image_2d(sdata, image_key).data
    h, w = (int(s) for s in stain_da.shape)
    y0, y1, x0, x1 = region or (0, h, 0, w)
    lo, hi = (float(v) for v in sampled_percentiles(stain_da, [1, 99]))  # each image by its own range
    stain = _scaled_stain(stain_da, (y0, y1, x0, x1), lo, hi)
    zoom = _zoom_to_model(sdata, image_key, stain_da[y0:y1, x0:x1], model, scale_by=scale_by)
    if abs(zoom - 1) > 0.05:
        size = (max(round(stain.shape[0] * zoom), 1), max(round(stain.shape[1] * zoom), 1))
        stain = resize(stain, size, order=1, preserve_range=True, anti_aliasing=zoom < 1).astype(np.float32)
    fields = sliding_window_average(
        stain[None], model.predict, window=window, stride=stride, batch_size=inference_batch(model.device)
    )
    nuclei = nuclei_from_depth(fields[0], fields[1], min_area=min_area_px)
    ids = nuclei.ravel()
    inside = ids > 0
    n = int(ids.max()) + 1
    count = np.bincount(ids[inside], minlength=n)
    mean = np.stack(
        [
            np.bincount(ids[inside], weights=p, minlength=n)
            for p in fields[2:].reshape(len(model.classes), -1)[:, inside]
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


#: With ``scale_by="auto"``, nuclei wider than this factor times the training ones (after
#: resampling by pixel size) are shrunk to the training width (see :func:`predict_image_classes`).
WIDER_THAN_TRAINING = 2.0


def _zoom_to_model(sdata: SpatialData, image_key: str, stain, model: ImageClassifierModel, *, scale_by: str) -> float:
    """The factor that resamples ``stain`` (one region of the image) to the model's nucleus scale."""
    if scale_by not in ("auto", "nucleus_width", "pixel_size"):
        raise ValueError(f"scale_by must be 'auto', 'nucleus_width' or 'pixel_size', not {scale_by!r}.")

    def by_pixel_size() -> float:  # only when needed: without units, the pixel size is estimated from the nuclei
        return 1.0 if model.pixel_size_um is None else pixel_size_um(sdata, image_key) / model.pixel_size_um

    if scale_by == "pixel_size" or model.nucleus_width_px is None:
        return by_pixel_size()
    width = measure_nucleus_width(stain).width_px
    if not np.isfinite(width):
        logger.warning("No nuclei stand out in %r to measure their width; resampled by the pixel sizes.", image_key)
        return by_pixel_size()
    zoom = None if scale_by == "nucleus_width" else by_pixel_size()
    if zoom is None or width * zoom > WIDER_THAN_TRAINING * model.nucleus_width_px:
        logger.info("Nuclei in %r are ~%.1f px wide, %.1f px in training: resampled by %.3g.",
                    image_key, width, model.nucleus_width_px, model.nucleus_width_px / width)  # fmt: skip
        return model.nucleus_width_px / width
    return zoom
