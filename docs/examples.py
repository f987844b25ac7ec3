"""Regenerate the pictures in docs/img: `python docs/examples.py` from the repository root."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from linebench.samples import RowMaker, RunSpec
from linebench.tasks import ParamSpec

IMG = Path(__file__).parent / "img"


def overlay(png: bytes, attn: np.ndarray) -> np.ndarray:
    """The map as a heat overlay on the image (log scale, so the three levels all show)."""
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    logp = np.log(attn)
    norm = ((logp - logp.min()) / (logp.max() - logp.min() + 1e-12) * 255).astype(np.uint8)
    norm_full = cv2.resize(norm, (w, h), interpolation=cv2.INTER_NEAREST)
    heat = cv2.applyColorMap(norm_full, cv2.COLORMAP_INFERNO)
    alpha = (0.15 + 0.6 * norm_full / 255.0)[..., None]  # floor faint, targets strong
    out = (img * (1 - alpha) + heat * alpha).astype(np.uint8)
    rows, cols = attn.shape
    grid = out.copy()
    for r in range(1, rows):
        cv2.line(grid, (0, round(r * h / rows)), (w, round(r * h / rows)), (255, 255, 255), 1)
    for c in range(1, cols):
        cv2.line(grid, (round(c * w / cols), 0), (round(c * w / cols), h), (255, 255, 255), 1)
    out = cv2.addWeighted(out, 0.8, grid, 0.2, 0)
    return out


# task -> (row index shown, overlay grids for the medium level). Intersection shows row 3: an
# answer above 0 at every level, so its map shows crossing targets.
EXAMPLES = {
    "tracing": (0, ("grid24", "grid16")),
    "intersection": (3, ("grid24",)),
    "grid_patch": (0, ("grid24",)),
}


def main() -> None:
    IMG.mkdir(exist_ok=True)
    for task, (index, grids) in EXAMPLES.items():
        for level in ("easy", "medium", "hard", "ood"):
            row = RowMaker(RunSpec(task, n=index + 1, seed=1, params=ParamSpec(difficulty=level)))(index)
            (IMG / f"{task}-{level}.png").write_bytes(row["image"])
            print(task, level, "|", row["question"], "->", row["answer"])
            if level == "medium":
                for grid in grids:
                    cv2.imwrite(str(IMG / f"{task}-medium-{grid}.png"), overlay(row["image"], row[f"attn_{grid}"]))

if __name__ == "__main__":
    main()
