import matplotlib

matplotlib.use("Agg")

import jointseg as jg


def test_overlay_draws_image_boundaries_and_points(segmented):
    ax = jg.pl.segmentation(segmented, image_key="morphology", nuclei_key="nuclei", points_key="transcripts",
                            region=(20, 120, 30, 200))  # fmt: skip
    assert len(ax.images) == 3  # stain, cell boundaries, nucleus boundaries
    assert len(ax.collections) == 1 and len(ax.collections[0].get_offsets()) > 0
    assert ax.get_xlim() == (29.5, 199.5)
