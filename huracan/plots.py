"""Figures of a run: cluster dendrogram, correlation heatmap, equity curves.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through pyplot,
so no GUI backend is needed and nothing global is left open; the PNG is rendered by Agg.
Each function returns the Figure so a caller can also log it to TensorBoard.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import dendrogram, leaves_list

from huracan.clustering import ClusterResult
from huracan.errors import ConfigError
from huracan.io import atomic_write_bytes

MAX_TICK_LABELS = 60  # beyond this many symbols, tick labels overlap into a black band


def plot_dendrogram(result: ClusterResult, path: str | Path | None = None) -> Figure:
    """The linkage tree, coloured by cluster, with the cut drawn as a dashed line.

    Args:
        result: clusters from a linkage method (``ward``, ``average``, ``complete``).
        path: where to save the PNG; not saved when None.

    Returns:
        The figure.
    """
    if result.linkage_matrix is None:
        raise ConfigError(f"cluster method {result.method!r} has no linkage to draw")
    linkage_matrix = result.linkage_matrix
    # the tree was cut into chosen_k; min_size merges after it are not a cut of the tree
    cut = _cut_height(linkage_matrix[:, 2], result.chosen_k or result.n_clusters)
    tree = dendrogram(
        linkage_matrix, labels=result.symbols, no_plot=True, color_threshold=cut or 0.0
    )
    n = len(result.symbols)
    fig = Figure(figsize=(min(4 + 0.2 * n, 16), 5), layout="constrained")
    ax = fig.add_subplot()
    for xs, ys, color in zip(tree["icoord"], tree["dcoord"], tree["color_list"], strict=True):
        ax.plot(xs, ys, color=color, linewidth=1.0)
    if cut is not None:
        ax.axhline(cut, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, 10 * n)
    ax.set_xticks(5 + 10 * np.arange(n) if n <= MAX_TICK_LABELS else [])
    if n <= MAX_TICK_LABELS:
        ax.set_xticklabels(tree["ivl"], rotation=90, fontsize=8)
    ax.set_ylabel("distance (1 - |corr|)")
    ax.set_title(f"{result.method} linkage, {result.n_clusters} clusters, {n} assets")
    save_figure(fig, path)
    return fig


def plot_correlation_heatmap(result: ClusterResult, path: str | Path | None = None) -> Figure:
    """The correlation matrix, rows and columns in dendrogram leaf order.

    Without a linkage (``global``, ``isolated``), assets are ordered by cluster id.

    Args:
        result: clusters with their correlation matrix.
        path: where to save the PNG; not saved when None.

    Returns:
        The figure.
    """
    if result.linkage_matrix is not None:
        order = leaves_list(result.linkage_matrix)
    else:
        order = np.argsort(result.labels(result.symbols), kind="stable")
    corr = result.correlation_matrix[np.ix_(order, order)]
    n = len(order)
    side = min(3 + 0.15 * n, 12)
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(corr, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="correlation")
    if n <= MAX_TICK_LABELS:
        names = [result.symbols[j] for j in order]
        ax.set_xticks(np.arange(n), names, rotation=90, fontsize=7)
        ax.set_yticks(np.arange(n), names, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(f"correlation, {result.method} order")
    save_figure(fig, path)
    return fig


def plot_equity(
    timestamps: pd.DatetimeIndex,
    curves: dict[str, np.ndarray],
    boundaries: list[pd.Timestamp],
    path: str | Path | None = None,
) -> Figure:
    """Cumulative out-of-sample net return after costs, one line per group.

    Args:
        timestamps: the bars of the curves.
        curves: label -> cumulative net return in bps; a label ``all assets`` is drawn bold.
        boundaries: fold starts, drawn as dotted lines.
        path: where to save the PNG; not saved when None.
    """
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.add_subplot()
    for label, curve in curves.items():
        bold = label == "all assets"
        ax.plot(
            timestamps, curve, label=label, lw=2 if bold else 1.2, color="black" if bold else None
        )
    for boundary in boundaries:
        ax.axvline(boundary, color="grey", lw=0.5, ls=":")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title("Out-of-sample equity after costs (mean per asset); dotted: fold starts")
    ax.set_ylabel("cumulative net return (bps)")
    ax.legend(loc="upper left", fontsize=8)
    for label in ax.get_xticklabels():
        label.set_rotation(30)
    save_figure(fig, path)
    return fig


def _cut_height(heights: np.ndarray, n_clusters: int) -> float | None:
    """A distance between the merges that leave ``n_clusters`` and ``n_clusters - 1``."""
    n_merges = len(heights)
    if n_clusters <= 1 or n_clusters > n_merges + 1:
        return None
    below = heights[n_merges - n_clusters] if n_clusters <= n_merges else 0.0
    return float((below + heights[n_merges - n_clusters + 1]) / 2)


def save_figure(fig: Figure, path: str | Path | None) -> None:
    """Renders the figure to PNG at ``path`` atomically (nothing when path is None)."""
    if path is None:
        return
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
