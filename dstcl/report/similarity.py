"""The heat-map of a similarity file (``dstcl similarity --plot``): matplotlib, imported only here.

Left: the class x class matrix with the classes in the order of the clustered grouping (groups as blocks
on the diagonal, outlined), so the structure the clustered and interleaved orders use is visible.
Right: the task x task similarity of each class order of the file's split (same colour scale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DstclError

INSTALL_HINT = "pip install 'dstcl[plots]' (or pip install matplotlib)"


def check_plotting() -> None:
    """A DstclError saying how to install matplotlib when it is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DstclError(f"--plot needs matplotlib, which is not installed; install it with {INSTALL_HINT}, or drop "
                         "--plot (the JSON file holds everything the plot shows).") from None


def plot_similarity(doc: dict[str, Any], path: str | Path) -> None:
    """Write the heat-map of ``doc`` (a similarity file's content) to ``path`` (PNG)."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    matrix = np.asarray(doc["matrix"], dtype=np.float64)
    names = list(doc["class_names"])
    tasks = doc.get("tasks", {})
    groups = tasks.get("groups", {}).get("clustered") or [list(range(len(names)))]
    order = [c for g in groups for c in g]
    orders = tasks.get("orders", {})
    off = matrix[~np.eye(len(names), dtype=bool)]
    limit = float(np.abs(off).max()) if off.size else 1.0
    fig = plt.figure(figsize=(11 + 2.2 * (len(orders) > 0), 8.5))
    grid = fig.add_gridspec(max(len(orders), 1), 2, width_ratios=[4, 1.3 if orders else 0.01], wspace=0.25)
    ax = fig.add_subplot(grid[:, 0])
    image = ax.imshow(matrix[np.ix_(order, order)], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    start = 0
    for g in groups:
        ax.add_patch(plt.Rectangle((start - 0.5, start - 0.5), len(g), len(g), fill=False, lw=0.8, color="black"))
        start += len(g)
    if len(names) <= 40:
        ax.set_xticks(range(len(order)), [names[c] for c in order], rotation=90, fontsize=7)
        ax.set_yticks(range(len(order)), [names[c] for c in order], fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(f"{doc.get('dataset', '')}: class similarity (classes grouped into {len(groups)} clustered tasks)",
                 fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="centred cosine of class-mean features")
    for row, (name, split) in enumerate(orders.items()):
        small = fig.add_subplot(grid[row, 1])
        values = np.array([[np.nan if v is None else v for v in r] for r in split["matrix"]], dtype=np.float64)
        small.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        small.set_xticks([])
        small.set_yticks([])
        within, between = split.get("within"), split.get("between")
        text = f"{name}: within {within:+.2f}, between {between:+.2f}" if within is not None and between is not None \
            else name
        small.set_title(text, fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
