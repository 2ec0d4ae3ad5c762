"""What the bench plot scripts share (``offered_load.py``, ``plot_soak.py``): a headless
pyplot and one way to finish and save a figure (matplotlib from the ``test`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish(fig: Any, axes: Any, xlabel: str, title: str, path: Path) -> None:
    """Label, grid and legend every axis, title the figure, write it to ``path`` as PNG."""
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
