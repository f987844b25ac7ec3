"""Pictures and the one-page report of an evaluation run, and side-by-side comparisons.

`write_report(out, rows, predictions)` writes accuracy plots (per level, per knob, 95% intervals),
a gallery of wrong answers, and `report.html`: one self-contained page (every image inline as a
data URL, no script, no external file) with the score table, the plots, the attention plots and
overlays when the run has them, and the gallery. `compare(dirs, out)` puts several runs side by
side (one table, one plot).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Sequence

from ..fsio import atomic_write

GALLERY = 12  # wrong answers shown


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _groups(score: dict[str, Any], by: str) -> list[dict[str, Any]]:
    return [g for g in score["groups"] if g["by"] == by and g["n"]]


def accuracy_plots(score: dict[str, Any], out: Path) -> list[Path]:
    """accuracy-<by>.png for the level and every knob with more than one value."""
    plt = _plt()
    files = []
    kinds = ["difficulty"] + sorted({g["by"] for g in score["groups"]} - {"overall", "split", "difficulty"})
    for by in kinds:
        gs = _groups(score, by)
        if len(gs) < 2 and by != "difficulty":
            continue
        fig, ax = plt.subplots(figsize=(max(3.5, 0.7 * len(gs) + 1.5), 3))
        acc = [100 * g["accuracy"] for g in gs]
        err = [[100 * (g["accuracy"] - g["ci_low"]) for g in gs], [100 * (g["ci_high"] - g["accuracy"]) for g in gs]]
        bars = ax.bar(range(len(gs)), acc, yerr=err, capsize=3, color="tab:blue")
        _label_bars(ax, bars, acc)
        ax.set_xticks(range(len(gs)), [g["value"] for g in gs], rotation=30 if len(gs) > 4 else 0)
        ax.set_ylim(0, 100), ax.set_ylabel("accuracy %"), ax.set_title("by level" if by == "difficulty" else f"by {by}")
        files.append(_save(fig, out / f"accuracy-{by}.png"))
    return files


def _label_bars(ax, bars, values: Sequence[float | None]) -> None:
    """Each bar's value on it, and a 0% bar drawn as a visible line at zero, so a group at 0% never
    looks like a group with no rows; a missing value (None) is labelled n/a."""
    for bar, v in zip(bars, values):
        x, w = bar.get_x(), bar.get_width()
        if v is not None and v == 0:
            ax.plot([x, x + w], [0, 0], color=bar.get_facecolor(), lw=3, solid_capstyle="butt", clip_on=False)
        label = "n/a" if v is None else f"{v:.0f}%"
        ax.annotate(label, (x + w / 2, v or 0), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7)


def attention_plots(att: dict[str, Any], out: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for level, rows in [("all", att["layers"])] + list(att["by_level"].items()):
        for ax, key in zip(axes, ("ratio", "kl")):
            ax.plot([r["layer"] for r in rows], [r[key] for r in rows], marker="o", label=level, lw=2 if level == "all" else 1)
    axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[0].set_title("target / visual attention (1 = none)"), axes[1].set_title("KL(P || Q)")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlabel("layer"), ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers: no tick at 0.5
    return _save(fig, out / "attention.png")


def overlays(items: Sequence[tuple[dict, Any, bool, str]], profile: str, out: Path) -> list[Path]:
    """Figure-3-style rows: the image | the model's attention (mean over layers) | the ground-truth map."""
    import cv2
    import numpy as np

    from ..maps import AttentionMap, attention_map
    from ..show import PANEL_H, decode, map_panels, sheet

    files = []
    folder = out / "overlays"
    folder.mkdir(exist_ok=True)
    for row, q, ok, pred in items:
        png = row["image"]["bytes"] if isinstance(row["image"], dict) else _png_of(row["image"])
        image = decode(png)
        gt = attention_map(row, profile)
        model = AttentionMap(np.asarray(q, dtype=np.float32) / max(float(np.sum(q)), 1e-30), gt.shapes, gt.layout)
        h, w = image.shape[:2]
        plain = cv2.resize(image, (int(round(w * PANEL_H / h)), PANEL_H), interpolation=cv2.INTER_AREA)
        panels = [plain] + [p for p in map_panels(image, model)][:1] + [p for p in map_panels(image, gt)][:1]
        title = f"{'correct' if ok else 'wrong'}: {row['question']}  expected {row['answer']}, model said {pred[:40]!r}   (image | model attention | ground truth)"
        path = folder / f"{row['id']}.png"
        cv2.imwrite(str(path), sheet(panels, title, per_row=3))
        files.append(path)
    return files


def _png_of(image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _bdi(text: str) -> str:
    """Text from a model or a user, escaped and isolated: a direction override in it (U+202E) turns
    itself around, not the rest of the page."""
    return f"<bdi>{html.escape(str(text))}</bdi>"


def _img(path: Path, alt: str, width: int | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    w = f' width="{width}"' if width else ""
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"{w}>'


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.gallery{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;padding:8px;width:250px;font-size:13px}.card img{width:100%}code{background:#f6f6f6}"""


def write_report(out: Path, rows: Sequence[dict] | None = None, predictions: dict[str, str] | None = None) -> Path:
    """report.html for the run in `out` (its run.json and score.json; attention.json if present)."""
    out = Path(out)
    run = json.loads((out / "run.json").read_text())["identity"]
    score = json.loads((out / "score.json").read_text())
    att = json.loads((out / "attention.json").read_text()) if (out / "attention.json").is_file() else None
    plots = accuracy_plots(score, out)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>linebench eval: {html.escape(run['model'])}</title><style>{CSS}</style></head><body>"]
    o = score["groups"][0]
    parts.append(f"<h1>{_bdi(run['model'])} on {_bdi(run['data'])} ({html.escape(run['split'])})</h1>")
    parts.append(
        f"<p>Accuracy <b>{100 * (o['accuracy'] or 0):.1f}%</b> (95% interval {100 * (o['ci_low'] or 0):.1f}–{100 * (o['ci_high'] or 0):.1f}) on "
        f"{o['n']} rows; unparseable answers: {score['unparseable']}. Backend <code>{html.escape(run['backend'])}</code>; prompt: the row's question"
        + (f" + <code>{_bdi(run['prompt_suffix'])}</code>" if run["prompt_suffix"] else "")
        + (f"; system: <code>{_bdi(run['system'])}</code>" if run.get("system") else "")
        + f"; generator <code>{html.escape(str(score.get('generator_version')))}</code>.</p>"
    )
    level_rows = [g for g in score["groups"] if g["by"] in ("overall", "difficulty") and g["n"]]
    other_rows = [g for g in score["groups"] if g["by"] not in ("overall", "difficulty") and g["n"]]

    def table(groups) -> str:
        head = "<table><tr><th>group</th><th>value</th><th>rows</th><th>accuracy %</th><th>95% interval</th><th>unparseable</th></tr>"
        body = "".join(
            f"<tr><td>{html.escape(g['by'])}</td><td>{html.escape(str(g['value']))}</td><td>{g['n']}</td><td>{100 * g['accuracy']:.1f}</td>"
            f"<td>{100 * g['ci_low']:.1f}–{100 * g['ci_high']:.1f}</td><td>{g['unparseable']}</td></tr>"
            for g in groups
        )
        return head + body + "</table>"

    level_plot = [p for p in plots if p.stem == "accuracy-difficulty"]
    parts.append("<h2>Scores</h2>" + table(level_rows) + "".join(_img(p, p.stem) for p in level_plot))
    if att:
        parts.append(
            f"<h2>Attention</h2><p>From the model's real forward pass (SDPA kept), for the query that produces the answer's last token, "
            f"with the ground-truth map at this model's layout (<code>{html.escape(att['profile'])}</code>): the ratio of the mean attention "
            "on target tokens to the mean on all visual tokens (1 = no preference), and KL(P ‖ Q), per layer and level.</p>"
        )
        parts.append(_img(out / "attention.png", "attention per layer"))
        levels = list(att["by_level"])
        head = "<table><tr><th>layer</th><th>ratio (all)</th><th>KL (all)</th>" + "".join(f"<th>ratio ({html.escape(lv)})</th>" for lv in levels) + "</tr>"
        body = "".join(
            f"<tr><td>{r['layer']}</td><td>{r['ratio']:.3f}</td><td>{r['kl']:.3f}</td>"
            + "".join(f"<td>{att['by_level'][lv][i]['ratio']:.3f}</td>" for lv in levels)
            + "</tr>"
            for i, r in enumerate(att["layers"])
        )
        parts.append(head + body + "</table>")
        shots = sorted((out / "overlays").glob("*.png")) if (out / "overlays").is_dir() else []
        parts.append("".join(f"<div>{_img(p, p.stem, 900)}</div>" for p in shots))
    gallery = out / "gallery.json"
    if gallery.is_file():
        items = json.loads(gallery.read_text())
        parts.append(f"<h2>Wrong answers ({len(items)} shown)</h2><div class='gallery'>")
        for it in items:
            parts.append(
                f"<div class='card'>{_img(out / it['image'], it['id'])}<div><b>{_bdi(it['question'])}</b></div>"
                f"<div>expected <code>{_bdi(it['answer'])}</code></div><div>model: <code>{_bdi(it['prediction'])}</code></div></div>"
            )
        parts.append("</div>")
    knob_plots = [p for p in plots if p.stem != "accuracy-difficulty"]
    if other_rows or knob_plots:
        parts.append(
            "<h2>Accuracy by knob</h2>" + "".join(_img(p, p.stem) for p in knob_plots)
            + f"<details><summary>every breakdown ({len(other_rows)} groups)</summary>{table(other_rows)}</details>"
        )
    parts.append("</body></html>")
    path = out / "report.html"
    atomic_write(path, "\n".join(parts))
    return path


def write_gallery(out: Path, rows: Sequence[dict], predictions: dict[str, str], correct: dict[str, bool]) -> None:
    """gallery.json and gallery/<id>.png for up to GALLERY wrong answers (the report embeds them)."""
    folder = out / "gallery"
    folder.mkdir(exist_ok=True)
    items = []
    for r in rows:
        if len(items) >= GALLERY:
            break
        if r["id"] in predictions and not correct.get(r["id"], False):
            png = r["image"]["bytes"] if isinstance(r["image"], dict) else _png_of(r["image"])
            (folder / f"{r['id']}.png").write_bytes(png)
            items.append({"id": r["id"], "image": f"gallery/{r['id']}.png", "question": r["question"], "answer": str(r["answer"]), "prediction": str(predictions[r["id"]])})
    (out / "gallery.json").write_text(json.dumps(items, indent=1) + "\n")


def compare(dirs: Sequence[str | Path], out: str | Path) -> Path:
    """compare.md, compare.png and compare.html: several runs' accuracy side by side, overall and per level."""
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for d in dirs:
        d = Path(d)
        if not (d / "score.json").is_file() or not (d / "run.json").is_file():
            from ..errors import UsageError

            raise UsageError(f"{d}: not a linebench eval folder (no run.json / score.json)")
        runs.append((json.loads((d / "run.json").read_text())["identity"], json.loads((d / "score.json").read_text())))
    levels = sorted({g["value"] for _, s in runs for g in _groups(s, "difficulty")}, key=lambda v: (["easy", "medium", "hard", "ood"] + [v]).index(v))
    head = "| model | data | rows | overall | " + " | ".join(levels) + " |"
    lines = [head, "|" + "---|" * (4 + len(levels))]
    for ident, s in runs:
        lv = {g["value"]: g for g in _groups(s, "difficulty")}
        cells = [f"{100 * lv[v]['accuracy']:.1f}" if v in lv else "–" for v in levels]
        lines.append(f"| {ident['model']} | {ident['data']} {ident['split']} | {s['groups'][0]['n']} | {100 * s['groups'][0]['accuracy']:.1f} | " + " | ".join(cells) + " |")
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * (len(levels) + 1) * len(runs) / 2 + 2), 3.5))
    width = 0.8 / len(runs)
    cats = ["overall"] + levels
    for i, (ident, s) in enumerate(runs):
        lv = {g["value"]: g for g in _groups(s, "difficulty")}
        vals = [100 * s["groups"][0]["accuracy"]] + [100 * lv[v]["accuracy"] if v in lv else None for v in levels]  # None: the run has no such level
        bars = ax.bar([c + i * width for c in range(len(cats))], [v or 0 for v in vals], width, label=ident["model"])
        _label_bars(ax, bars, vals)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cats))], cats), ax.set_ylim(0, 100), ax.set_ylabel("accuracy %"), ax.legend(fontsize=8)
    _save(fig, out / "compare.png")
    table = "".join(f"<tr>{''.join(f'<td>{html.escape(c.strip())}</td>' for c in line.strip('|').split('|'))}</tr>" for line in lines[2:])
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>linebench compare</title><style>{CSS}</style></head><body><h1>Side by side</h1>"
        f"<table><tr>{''.join(f'<th>{html.escape(c.strip())}</th>' for c in head.strip('|').split('|'))}</tr>{table}</table>{_img(out / 'compare.png', 'comparison')}</body></html>"
    )
    (out / "compare.html").write_text(page, encoding="utf-8")
    return out / "compare.md"
