"""VLMEvalKit's side of linebench: the TSV in its layout, read back, and the scoring its dataset
class (`vlmeval_dataset.LineBench`) calls. Nothing here imports VLMEvalKit.

The TSV has VLMEvalKit's mandatory columns (`index` an int unique per line, `image` the base64 of the
row's image file as stored in the folder, `question`, `answer`) and `category` (the difficulty
level, VLMEvalKit's usual breakdown column), then linebench's `id` and `task` (and `target` for a
`linebench maps` folder). Every field is quoted (csv.QUOTE_ALL; a lone carriage return in a
question would otherwise end a line), which pandas reads back.
The class reads it with every field a string (pandas would turn an answer "7" into 7 and "NA"
into NaN), and scores with `linebench score`'s own parser (`rows.verdict`)."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .rows import KEEP, TARGET, by_level, verdict

COLUMNS = ("index", "image", "question", "answer", "category", "id", "task")
CLASS = "LineBench"  # the dataset class's name in vlmeval.dataset
REGISTRATION = "from linebench.harnesses.vlmeval_dataset import LineBench  # noqa: F401,E402"
OVERALL = "overall"


def image_bytes(image: Mapping[str, Any]) -> bytes:
    """The stored bytes of an undecoded `datasets.Image` value (a path when there are none)."""
    if image.get("bytes"):
        return image["bytes"]
    return Path(image["path"]).read_bytes()


def tsv_lines(rows: Iterable[Mapping[str, Any]], grounding: bool) -> Iterable[str]:
    """The TSV text, header first, one chunk per row. `rows` are harness rows (rows.KEEP, the image
    undecoded, TARGET for grounding rows)."""
    columns = COLUMNS + ((TARGET,) if grounding else ())
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_ALL)  # a lone \r ends a line for pandas: quoted

    def take() -> str:
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    writer.writerow(columns)
    yield take()
    for index, row in enumerate(rows):
        values = {
            "index": index, "image": base64.b64encode(image_bytes(row["image"])).decode("ascii"), "category": row["difficulty"],
            **{k: row[k] for k in KEEP if k != "difficulty"}, **({TARGET: row[TARGET]} if grounding else {}),
        }  # fmt: skip
        writer.writerow([values[c] for c in columns])
        yield take()


def read_tsv(path: str | Path):
    """An exported TSV as a pandas DataFrame, every field a string, `index` an int (what
    VLMEvalKit's ImageBaseDataset expects)."""
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    frame["index"] = frame["index"].astype(int)
    return frame


def prediction_text(value: Any) -> str:
    """A prediction as text (a missing one, None or NaN, is "")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def read_predictions(path: str | Path) -> dict[int, str]:
    """VLMEvalKit's result file (xlsx by default; tsv, csv, json, jsonl or pkl by its PRED_FORMAT)
    -> the prediction per `index`, as text. Read with every field a string: vlmeval's own `load`
    lets pandas turn the predictions "None", "NA" or "null" into NaN (which linebench's parser
    would see as no answer, and reads "None" as 0), and gives json back as a list of records."""
    import pandas as pd

    path = Path(path)
    ext = path.suffix.lower()
    strings = dict(dtype=str, keep_default_na=False, na_filter=False)
    if ext == ".xlsx":
        frame = pd.read_excel(path, **strings)
    elif ext in (".tsv", ".csv"):
        frame = pd.read_csv(path, sep="\t" if ext == ".tsv" else ",", **strings)
    elif ext == ".json":
        frame = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    elif ext == ".jsonl":
        frame = pd.DataFrame([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])
    elif ext == ".pkl":
        frame = pd.read_pickle(path)
    else:
        raise ValueError(f"{path}: not a VLMEvalKit result file (xlsx, tsv, csv, json, jsonl or pkl)")
    return {int(i): prediction_text(p) for i, p in zip(frame["index"], frame["prediction"])}


def score_rows(rows: Iterable[Mapping[str, Any]], predictions: Mapping[int, Any]) -> list[dict[str, Any]]:
    """Rows of the TSV (as read_tsv gives them) and the model's prediction per `index` -> one table
    row overall, then one per level: level, n, correct, unparseable, accuracy. A row without a
    prediction is wrong (VLMEvalKit predicts every row; a failed one holds its failure message)."""
    verdicts = []
    for row in rows:
        harness_row = {k: row[k] for k in row if k in (*KEEP, TARGET)}
        harness_row["difficulty"] = row["category"]
        ok = verdict(harness_row, prediction_text(predictions.get(int(row["index"]))))
        verdicts.append((row["task"], row["category"], ok))
    if not verdicts:
        return []
    levels = by_level((t, lv, bool(ok)) for t, lv, ok in verdicts)

    def line(name: str, chosen: list) -> dict[str, Any]:
        correct = sum(bool(ok) for _, _, ok in chosen)
        return {"level": name, "n": len(chosen), "correct": correct, "unparseable": sum(ok is None for _, _, ok in chosen), "accuracy": correct / len(chosen)}

    return [line(OVERALL, verdicts)] + [line(lv, [v for v in verdicts if v[1] == lv]) for lv in levels]


def data_config(name: str, tsv: Path) -> str:
    """`run.py --data-config` JSON: the name, the class and the TSV's absolute path."""
    return json.dumps({name: {"class": CLASS, "dataset": name, "tsv": str(Path(tsv).resolve())}})


def write_tsv(rows: Iterable[Mapping[str, Any]], grounding: bool, path: Path, report: Callable[[int], None] | None = None) -> int:
    """Write the TSV to `path` (a new file) -> rows written."""
    n = -1
    with open(path, "w", encoding="utf-8", newline="") as fh:
        for n, chunk in enumerate(tsv_lines(rows, grounding)):
            fh.write(chunk)
            if n and report:
                report(1)
    return max(n, 0)
