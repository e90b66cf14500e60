"""Captioned picture grids (Grad-CAM overlays, error galleries): matplotlib only, no torch, so ``maskwatch evaluate``
can draw its galleries in an install without the training extra."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maskwatch.fileio import save_figure


def save_grid(
    tiles: Sequence[np.ndarray],
    captions: Sequence[str],
    path: str,
    columns: int = 8,
    regions: Sequence[np.ndarray | None] | None = None,
    title: str = "",
) -> None:
    """A captioned grid of RGB tiles (optionally with a dashed rectangle on each) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = max(1, len(tiles))
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.85 + (0.4 if title else 0)), dpi=100, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(tiles):
            ax.imshow(tiles[i])
            ax.set_title(captions[i], fontsize=6)
            if regions is not None and regions[i] is not None:
                x1, y1, x2, y2 = regions[i]
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="white", lw=0.8, ls="--"))
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
