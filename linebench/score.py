"""`linebench score`: model predictions against a dataset folder -> accuracy tables.

What is counted (docs/scoring.md):

- A dataset row with a prediction is *scored*: correct if its parsed prediction equals its parsed
  answer (linebench.answers, chosen by the task's `answer_kind`); an unparseable prediction is
  wrong and is also counted as *unparseable*.
- A dataset row with no prediction is *missing*: reported (count and the first ids) and left out
  of the accuracy, unless `missing_as_wrong`, which scores it as wrong.
- A prediction whose id is not in the dataset is *unknown*: reported and ignored.
- A line that is not a JSON object with a string `id` and a `prediction` key is *malformed*:
  reported with its line number and ignored (`parse_line` says which lines are accepted; a UTF-8
  byte order mark before a line is skipped). An id given twice: the last line wins, and the id is
  reported as duplicated.

Accuracy comes overall and per split, per difficulty level and per value of every knob column of
the task (int columns with more than `MAX_LEVELS` values, and float columns, in quantile bins),
each with a 95% percentile-bootstrap interval.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .version import __version__
from .answers import MAX_TEXT, PARSERS, is_correct, parse_many
from .folder import MANIFEST, RUN_FILE, manifest_kind, read_maps_manifest, read_manifest
from .pointing import judge
from .errors import UsageError
from .tasks import get_task

BASE_COLUMNS = ("id", "answer", "task", "split", "difficulty")
MAX_LEVELS = 16  # an int column with more distinct values than this is binned
BINS = 4  # quantile bins for float (and many-valued int) columns
SHOW_IDS = 10  # ids / lines listed per problem in reports
CONFIDENCE = 0.95


@dataclass
class Group:
    by: str  # "overall", "split", "difficulty" or a knob column
    value: str  # "all", "train", "easy", "3", "0.05..0.1" (a bin: lo..hi of the values in it)
    n: int  # scored rows
    correct: int
    unparseable: int
    accuracy: float | None  # None when n == 0
    ci_low: float | None
    ci_high: float | None


@dataclass
class ScoreReport:
    dataset: str
    predictions: str
    tasks: list[str]
    generator_version: str | None
    rows: int  # rows in the dataset
    predicted: int  # dataset rows that have a prediction
    scored: int  # rows in the accuracy (predicted, plus missing with missing_as_wrong)
    correct: int
    unparseable: int
    missing: int
    missing_ids: list[str]
    unknown: int
    unknown_ids: list[str]
    duplicates: int
    duplicate_ids: list[str]
    malformed: int
    malformed_lines: list[str]  # "line N: why"
    missing_as_wrong: bool
    bootstrap: int
    seed: int
    confidence: float = CONFIDENCE
    groups: list[Group] = field(default_factory=list)
    linebench_version: str = __version__

    @property
    def overall(self) -> Group:
        return self.groups[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    def to_markdown(self) -> str:
        return render_markdown(self)


# --------------------------------------------------------------------------- inputs


@dataclass
class Predictions:
    by_id: dict[str, Any]
    malformed: list[str]
    duplicate_ids: list[str]  # each duplicated id once, in order of first repeat


MAX_LINE = 1 << 20  # bytes per predictions line; a longer line is malformed (and is not read into memory)
MAX_BOOTSTRAP = 1_000_000


def _lines(fh) -> Iterator[bytes | None]:
    """The lines of a binary file, None in place of each line over MAX_LINE bytes (skipped in chunks)."""
    while True:
        line = fh.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = fh.readline(MAX_LINE)
            yield None
        else:
            yield line


BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate: a str JSON can carry and UTF-8 cannot


def parse_line(raw: bytes | None) -> dict[str, Any] | str | None:
    """One predictions line as `linebench score` reads it: the JSON object, or why the line is
    malformed, or None for a blank line. `raw` None stands for a line over MAX_LINE bytes.
    `linebench eval` checks every line it writes with this, so it stores only what is accepted."""
    if raw is None:
        return f"longer than {MAX_LINE // (1 << 20)} MiB"
    if raw.startswith(BOM):  # a file saved by an editor that marks UTF-8 (or files concatenated)
        raw = raw[len(BOM):]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return f"not JSON ({e.msg})"
    except (ValueError, RecursionError) as e:  # a 5,000-digit integer, 100,000 nested brackets
        return f"not JSON that can be read ({str(e)[:60] or type(e).__name__})"
    if not isinstance(obj, dict):
        return "not a JSON object"
    if not isinstance(obj.get("id"), str):
        return 'no string "id"'
    if "prediction" not in obj:
        return 'no "prediction"'
    return obj


def storable_prediction(text: str) -> str:
    """A model's reply as a predictions line keeps it, so that `linebench score` reads every line
    `linebench eval` writes and judges it as it would the whole reply: a lone surrogate (which no
    UTF-8 file can hold) becomes U+FFFD, and a text longer than MAX_TEXT keeps its first and last
    MAX_TEXT // 2 characters, which are all the parsers read (answers.as_text, pointing), so no
    verdict changes and the line stays far below MAX_LINE."""
    text = _SURROGATE.sub("\ufffd", text)
    if len(text) > MAX_TEXT:
        half = MAX_TEXT // 2
        text = text[:half] + "\n\n" + text[-half:]
    return text



def read_predictions(path: Path) -> Predictions:
    """JSONL rows {"id": str, "prediction": any}; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"predictions file {path} does not exist" if not path.exists() else f"predictions {path} is not a file")
    by_id: dict[str, Any] = {}
    malformed: list[str] = []
    dups: dict[str, None] = {}
    with open(path, "rb") as fh:
        for number, raw in enumerate(_lines(fh), 1):
            obj = parse_line(raw)
            if obj is None:
                continue
            if isinstance(obj, str):
                malformed.append(f"line {number}: {obj}")
                continue
            if obj["id"] in by_id:
                dups.setdefault(obj["id"])
            by_id[obj["id"]] = obj["prediction"]
    if not by_id:
        why = f"; {len(malformed)} malformed line(s), first: {malformed[0]}" if malformed else " (the file is empty)"
        raise UsageError(f"no predictions in {path}: expected JSONL rows {{\"id\": ..., \"prediction\": ...}}{why}")
    return Predictions(by_id, malformed, list(dups))


def read_rows(folder: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, type]]:
    """The columns scoring needs from every shard listed in manifest.json
    -> (columns as Python lists, manifest, knob column name -> kind)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    if not (folder / MANIFEST).exists() and not (folder / RUN_FILE).exists():
        raise UsageError(f"{folder} is not a linebench dataset folder (it has no {MANIFEST})")
    if manifest_kind(folder) == "annotations":
        return _read_grounding_rows(folder)
    manifest = read_manifest(folder)  # a run without a manifest yet gets its own message
    shards = manifest.get("shards") or []
    tasks = [manifest.get("task")]
    knob_kinds: dict[str, type] = {}
    tables = []
    for shard in shards:
        path = folder / shard["path"]
        if not path.is_file():
            raise UsageError(f"{folder}: shard {shard['path']} is missing (run `linebench verify {folder}`)")
        try:
            names = set(pq.read_schema(path).names)
            missing = [c for c in BASE_COLUMNS if c not in names]
            if missing:
                raise UsageError(f"{path} has no column(s) {', '.join(missing)}: not a linebench shard")
            if not knob_kinds:
                task_names = {t for t in tasks if t}
                for t in sorted(task_names):
                    for c in get_task(t).columns:
                        knob_kinds.setdefault(c.name, c.kind)
            cols = list(BASE_COLUMNS) + [c for c in knob_kinds if c in names]
            tables.append(pq.read_table(path, columns=cols))
        except (OSError, pa.ArrowException) as e:
            raise UsageError(f"{path} is unreadable ({e}); run `linebench verify {folder}`") from None
    if not tables:
        raise UsageError(f"{folder}: manifest.json lists no shards")
    table = pa.concat_tables(tables, promote_options="default")
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    return columns, manifest, {k: v for k, v in knob_kinds.items() if k in columns}


def row_correct(row: dict[str, Any], prediction: Any, task: str | None = None) -> bool | None:
    """One row's verdict (None = unparseable): a linebench task's answer parser, or, for a
    `linebench maps` row (task "grounding-<kind>"), IoU / point matching (linebench.pointing)."""
    name = task or row.get("task") or ""
    if name.startswith("grounding-"):
        geometry = row["geometry"]
        return judge(prediction, json.loads(geometry) if isinstance(geometry, (str, bytes)) else geometry)[0]
    kind = getattr(get_task(name), "answer_kind", "number") if name else "number"
    return is_correct(kind, prediction, str(row["answer"]))


def _read_grounding_rows(folder: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, type]]:
    """A `linebench maps` folder: id, split and geometry (its annotations are what answers are scored
    against); `task` is "grounding-<kind>" and there are no levels or knobs."""
    manifest = read_maps_manifest(folder)
    tables = []
    for shard in manifest["shards"]:
        path = folder / shard["path"]
        try:
            tables.append(pq.read_table(path, columns=["id", "geometry"]).append_column("split", pa.array([shard["split"]] * shard["rows"])))
        except (OSError, pa.ArrowException, KeyError) as e:
            raise UsageError(f"{path} is unreadable or has no id/geometry column ({str(e)[:100]}); run `linebench maps` again") from None
    table = pa.concat_tables(tables)
    n = table.num_rows
    kind = manifest["options"]["kind"]
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    columns.update(task=[f"grounding-{kind}"] * n, difficulty=["all"] * n)
    return columns, manifest, {}


# --------------------------------------------------------------------------- statistics


def _key(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def bootstrap_ci(correct: int, n: int, resamples: int, seed: int, key: str = "") -> tuple[float, float]:
    """Percentile bootstrap interval of an accuracy `correct / n`.

    Resampling n 0/1 outcomes with replacement and counting the ones is exactly a
    Binomial(n, correct / n) draw, so the bootstrap distribution is drawn directly (vectorised,
    O(resamples)). The stream is seeded by (seed, key): a group's interval does not depend on
    which other groups are reported."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _key(key)]))
    means = rng.binomial(n, correct / n, size=resamples) / n
    alpha = (1.0 - CONFIDENCE) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _group_labels(values: list[Any], kind: type) -> tuple[np.ndarray, list[str]]:
    """Per-row group index (-1 for nulls) and the group labels, in a natural order: one group per
    value, or (float columns, int columns with many values) quantile bins labelled lo..hi."""
    distinct = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    binned = kind is float or (kind is int and len(distinct) > MAX_LEVELS)
    if not binned:
        index = {v: i for i, v in enumerate(distinct)}
        return np.array([index[v] if v is not None else -1 for v in values], dtype=np.int64), [_fmt_value(v) for v in distinct]
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    ok = ~np.isnan(arr)
    edges = np.unique(np.quantile(arr[ok], np.linspace(0, 1, BINS + 1)))
    inner = edges[1:-1]
    bins = np.where(ok, np.searchsorted(inner, np.where(ok, arr, 0.0), side="right"), -1)
    labels, remap = [], np.full(len(inner) + 1, -1, dtype=np.int64)
    for b in range(len(inner) + 1):
        members = arr[bins == b]
        if members.size:
            remap[b] = len(labels)
            lo, hi = members.min(), members.max()
            if kind is int:
                lo, hi = int(lo), int(hi)
            labels.append(_fmt_value(lo) if lo == hi else f"{_fmt_value(lo)}..{_fmt_value(hi)}")
    return np.where(bins >= 0, remap[np.maximum(bins, 0)], -1), labels


def level_order(tasks: list[str]) -> list[str]:
    order: list[str] = []
    for t in tasks:
        try:
            order += [lv for lv in get_task(t).levels if lv not in order]
        except UsageError:
            pass
    return order


# --------------------------------------------------------------------------- scoring


def score(
    dataset_dir: Path,
    predictions_path: Path,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    missing_as_wrong: bool = False,
    only_ids: set[str] | None = None,
) -> ScoreReport:
    """Score a predictions JSONL against a dataset folder written by `linebench generate`.
    `only_ids`: score just these rows of the folder (e.g. the split and --limit `linebench eval` ran)."""
    if not 1 <= bootstrap <= MAX_BOOTSTRAP:
        raise UsageError(f"--bootstrap must be within 1..{MAX_BOOTSTRAP:,}, got {bootstrap}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    preds = read_predictions(predictions_path)
    cols, manifest, knob_kinds = read_rows(dataset_dir)
    if only_ids is not None:
        keep = [i for i, v in enumerate(cols["id"]) if v in only_ids]
        cols = {k: [v[i] for i in keep] for k, v in cols.items()}
    ids: list[str] = cols["id"]
    n_rows = len(ids)
    tasks = sorted(set(cols["task"]))
    grounding = manifest.get("kind") == "annotations"
    kinds = {}
    for t in tasks:
        if grounding:
            kinds[t] = t
            continue
        kind = getattr(get_task(t), "answer_kind", "number")
        if kind not in PARSERS:
            raise UsageError(f"task {t!r} has answer kind {kind!r}; the scorer knows {', '.join(PARSERS)}")
        kinds[t] = kind

    known = set(ids)
    has_pred = np.array([i in preds.by_id for i in ids], dtype=bool)
    correct = np.zeros(n_rows, dtype=bool)
    unparseable = np.zeros(n_rows, dtype=bool)
    task_col = np.array(cols["task"], dtype=object)
    for t in tasks:
        rows = np.flatnonzero((task_col == t) & has_pred)
        kind = kinds[t]
        if grounding:  # boxes: IoU >= 0.5; points: matched one-to-one (linebench.pointing)
            for r in rows:
                verdict = judge(preds.by_id[ids[r]], json.loads(cols["geometry"][r]))[0]
                unparseable[r] = verdict is None
                correct[r] = bool(verdict)
            continue
        truth = parse_many(kind, [cols["answer"][r] for r in rows])
        got = parse_many(kind, [preds.by_id[ids[r]] for r in rows])
        for r, want, have in zip(rows, truth, got):
            if want is None:
                raise UsageError(f"{dataset_dir}: row {ids[r]} has answer {cols['answer'][r]!r}, not a {kind}")
            if have is None:
                unparseable[r] = True
            else:
                correct[r] = have == want
    scored = has_pred | missing_as_wrong
    if not scored.any():
        raise UsageError(
            f"no prediction in {predictions_path} has an id of {dataset_dir} (ids look like {ids[0]!r}): wrong folder or file?"
        )

    groups: list[Group] = []

    def add(by: str, value: str, mask: np.ndarray) -> None:
        m = mask & scored
        n = int(m.sum())
        c = int((correct & m).sum())
        u = int((unparseable & m).sum())
        if n:
            lo, hi = bootstrap_ci(c, n, bootstrap, seed, f"{by}={value}")
            groups.append(Group(by, value, n, c, u, c / n, lo, hi))
        else:
            groups.append(Group(by, value, 0, 0, 0, None, None, None))

    add("overall", "all", np.ones(n_rows, dtype=bool))
    breakdowns: list[tuple[str, type]] = [("split", str)] + ([] if grounding else [("difficulty", str)]) + list(knob_kinds.items())
    levels = level_order(tasks)
    for by, kind in breakdowns:
        index, labels = _group_labels(cols[by], kind)
        order = list(range(len(labels)))
        if by == "difficulty":
            order.sort(key=lambda i: (levels.index(labels[i]) if labels[i] in levels else len(levels), labels[i]))
        for i in order:
            add(by, labels[i], index == i)

    missing_ids = [i for i, p in zip(ids, has_pred) if not p]
    unknown_ids = [i for i in preds.by_id if i not in known]
    return ScoreReport(
        dataset=str(dataset_dir),
        predictions=str(predictions_path),
        tasks=tasks,
        generator_version=manifest.get("generator_version"),
        rows=n_rows,
        predicted=int(has_pred.sum()),
        scored=int(scored.sum()),
        correct=int((correct & scored).sum()),
        unparseable=int(unparseable.sum()),
        missing=len(missing_ids),
        missing_ids=missing_ids[:SHOW_IDS],
        unknown=len(unknown_ids),
        unknown_ids=unknown_ids[:SHOW_IDS],
        duplicates=len(preds.duplicate_ids),
        duplicate_ids=preds.duplicate_ids[:SHOW_IDS],
        malformed=len(preds.malformed),
        malformed_lines=preds.malformed[:SHOW_IDS],
        missing_as_wrong=missing_as_wrong,
        bootstrap=bootstrap,
        seed=seed,
        groups=groups,
    )


# --------------------------------------------------------------------------- reports


def fmt_acc(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def fmt_ci(g: Group) -> str:
    return "-" if g.ci_low is None else f"[{100 * g.ci_low:.1f}, {100 * g.ci_high:.1f}]"


def problems(report: ScoreReport) -> list[str]:
    """One line per kind of problem with the inputs (empty when there is none)."""
    out = []

    def ids(items: list[str], total: int) -> str:
        more = f", ... ({total - len(items)} more)" if total > len(items) else ""
        return ", ".join(items) + more

    if report.missing:
        what = "scored as wrong" if report.missing_as_wrong else "not in the accuracy"
        out.append(f"{report.missing} dataset row(s) have no prediction ({what}): {ids(report.missing_ids, report.missing)}")
    if report.unknown:
        out.append(f"{report.unknown} prediction id(s) are not in the dataset (ignored): {ids(report.unknown_ids, report.unknown)}")
    if report.duplicates:
        out.append(f"{report.duplicates} id(s) predicted more than once (the last line counts): {ids(report.duplicate_ids, report.duplicates)}")
    if report.malformed:
        out.append(f"{report.malformed} malformed line(s) ignored: {ids(report.malformed_lines, report.malformed)}")
    return out


def summary(report: ScoreReport) -> str:
    g = report.overall
    return (
        f"accuracy {fmt_acc(g.accuracy)} {fmt_ci(g)} ({report.confidence:.0%} bootstrap CI) on {report.scored} of "
        f"{report.rows} rows; {report.unparseable} unparseable ({fmt_acc(report.unparseable / report.scored if report.scored else None)})"
    )


def render_markdown(report: ScoreReport) -> str:
    lines = [
        f"# linebench score: {', '.join(report.tasks)}",
        "",
        f"- dataset: `{report.dataset}` ({report.rows} rows, generator {report.generator_version})",
        f"- predictions: `{report.predictions}`",
        f"- {summary(report)}",
        f"- scored rows: those with a prediction{' and those without (as wrong)' if report.missing_as_wrong else ''}; "
        f"unparseable answers count as wrong",
        f"- intervals: {report.confidence:.0%} percentile bootstrap, {report.bootstrap} resamples, seed {report.seed}; "
        f"linebench {report.linebench_version}",
    ]
    probs = problems(report)
    if probs:
        lines += ["", "## Problems with the inputs", ""] + [f"- {p}" for p in probs]
    lines += ["", "## Accuracy", ""]
    by = None
    for g in report.groups:
        if g.by != by:
            by = g.by
            lines += ["", f"### {by}", "", f"| {by} | n | correct | accuracy | {report.confidence:.0%} CI | unparseable |", "|---|---:|---:|---:|---|---:|"]
        lines.append(f"| {g.value} | {g.n} | {g.correct} | {fmt_acc(g.accuracy)} | {fmt_ci(g)} | {g.unparseable} |")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def default_outputs(predictions_path: Path) -> tuple[Path, Path]:
    """`preds.jsonl` -> `preds.score.json`, `preds.score.md`, next to it."""
    p = Path(predictions_path)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return p.with_name(f"{stem}.score.json"), p.with_name(f"{stem}.score.md")
