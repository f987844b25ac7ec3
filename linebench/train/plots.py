"""Pictures of a training run (from its metrics.jsonl and eval.json): what people look at first."""

from __future__ import annotations

import json
from pathlib import Path


def plot_run(out: str | Path) -> list[Path]:
    """loss.png (loss terms over steps), accuracy.png (held-out accuracy over steps), attention.png
    (the target/visual attention ratio and KL per layer, before and after). Returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if "eval" not in r and "loss" in r]
    evals = [r["eval"] for r in records if "eval" in r]
    files = []

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("loss", "total"), ("ntp", "NTP"), ("klal", "KLAL")):
        pts = [(r["step"], r[key]) for r in steps if key in r]
        if pts:
            ax.plot(*zip(*pts), label=label)
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.legend(), ax.set_title("training loss")
    files.append(_save(fig, out / "loss.png"))

    if evals:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([e["step"] for e in evals], [e["accuracy"] for e in evals], marker="o")
        ax.set_xlabel("step"), ax.set_ylabel("held-out accuracy"), ax.set_ylim(0, 1), ax.set_title("accuracy")
        files.append(_save(fig, out / "accuracy.png"))
        first, last = evals[0], evals[-1]
        if first.get("layers") and last.get("layers"):
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
            for ax, key, title in ((axes[0], "ratio", "target / visual attention (1 = none)"), (axes[1], "kl", "KL(P || Q)")):
                for e, label in ((first, f"before (step {first['step']})"), (last, f"after (step {last['step']})")):
                    ax.plot([r["layer"] for r in e["layers"]], [r[key] for r in e["layers"]], marker="o", label=label)
                ax.set_xlabel("layer"), ax.set_title(title), ax.legend()
            axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
            files.append(_save(fig, out / "attention.png"))
    return files


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
