"""Regenerate the pictures in docs/img: `python docs/examples.py` from the repository root."""

from __future__ import annotations

from pathlib import Path

import cv2

from linebench.maps import attention_map
from linebench.samples import RowMaker, RunSpec
from linebench.show import decode, map_panels, sheet
from linebench.tasks import ParamSpec

IMG = Path(__file__).parent / "img"


# task -> row index shown. Intersection shows row 3: an answer above 0 at every level, so its
# map shows crossing targets.
EXAMPLES = {"tracing": 0, "intersection": 3, "grid_patch": 0}
# the maps drawn for the medium example of each task (what `linebench show` draws)
SHOW = ("llava-1.5", "qwen2.5-vl", "internvl", "llava-next")


def main() -> None:
    IMG.mkdir(exist_ok=True)
    for task, index in EXAMPLES.items():
        for level in ("easy", "medium", "hard", "ood"):
            row = RowMaker(RunSpec(task, n=index + 1, seed=1, params=ParamSpec(difficulty=level)))(index)
            (IMG / f"{task}-{level}.png").write_bytes(row["image"])
            print(task, level, "|", row["question"], "->", row["answer"])
            if level == "medium":
                image = decode(row["image"])
                panels = [p for name in SHOW for p in map_panels(image, attention_map(row, name))]
                picture = sheet(panels, f"{row['question']} -> {row['answer']}")
                cv2.imwrite(str(IMG / f"show-{task}.png"), picture)

if __name__ == "__main__":
    main()
