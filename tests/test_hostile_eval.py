"""Hostile input against `linebench eval` and `linebench score` (issue 27, the eval half): a broken
or flaky server, a busy or odd `--out`, a folder with one split, Ctrl-C, a bad option. What must
hold, as for the data commands (tests/test_hostile.py): nothing lost, nothing asked twice, one line
for every bad input.

`CASES` is table-driven: add a row (id, argv, the fake server's behaviour, a setup, the exit code,
a fragment of the output, paths that must exist, paths that must not). In argv and paths, `{data}`
is a small generated folder (24 grid-patch rows, test split), `{train}` one made by `linebench
generate` with its default train split only, `{url}` the fake server (tests/fake_openai.py),
`{out}` the run folder and `{tmp}` the test's folder. Every case also checks: no traceback, no
usage panel, exactly one `error:` line when it fails, and a predictions.jsonl (if any) whose every
line `linebench score` accepts, with no id twice and no empty answer. The cases that need more
than a table (two processes, Ctrl-C, a restarted server, the report, the storm) follow it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")
from typer.testing import CliRunner  # noqa: E402

from fake_openai import BROKEN, Behaviour, FakeServer, _storm  # noqa: E402
from linebench.cli import app  # noqa: E402
from linebench.errors import Interrupted  # noqa: E402
from linebench.score import parse_line  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 grid-patch rows (test split), levels in turn."""
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    out = tmp_path_factory.mktemp("hostile-eval") / "gp"
    generate(RunSpec("grid_patch", split="test", n=24, seed=5, params=ParamSpec((448, 448), "stratified"), maps=()), out, workers=1)
    return out


@pytest.fixture(scope="module")
def train_only(tmp_path_factory):
    """What `linebench generate --task grid_patch --n 6 --out d` makes: a folder with a train split only."""
    out = tmp_path_factory.mktemp("hostile-eval-train") / "d"
    r = runner.invoke(app, ["generate", "--task", "grid_patch", "--n", "6", "--workers", "1", "--maps", "grid24", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def truth_table(folder) -> dict[str, str]:
    """image sha256 -> answer, over every split of the folder."""
    import pyarrow.parquet as pq

    rows = [r for p in sorted((Path(folder) / "data").glob("*.parquet")) for r in pq.read_table(p, columns=["image", "answer"]).to_pylist()]
    return {hashlib.sha256(r["image"]["bytes"]).hexdigest(): r["answer"] for r in rows}


@pytest.fixture
def server(data, train_only):
    s = FakeServer({**truth_table(data), **truth_table(train_only)}).start()
    yield s
    s.stop()


def ev(*extra: str) -> list[str]:
    """An eval of the first 3 rows of {data} against the fake server, with fast retries."""
    return ["eval", "{data}", "--model", "fake-vlm", "--base-url", "{url}", "--out", "{out}", "--limit", "3",
            "--retries", "2", "--backoff", "0", "--timeout", "2", *extra]  # fmt: skip


def _hold_lock(out: Path, tmp: Path, data: Path):
    """What a running eval holds: the flock on OUT/.linebench-lock, with its pid in the file."""
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / ".linebench-lock", "w")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.write("4242\n")
    fh.flush()
    return fh  # kept open (and locked) until the case is over


def _bom_predictions(out: Path, tmp: Path, data: Path):
    """A predictions file saved by an editor that starts it with a UTF-8 byte order mark."""
    import pyarrow.parquet as pq

    first = pq.read_table(sorted(data.glob("data/*.parquet"))[0], columns=["id", "answer"]).to_pylist()[0]
    (tmp / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": first["id"], "prediction": first["answer"]}).encode() + b"\n")


def _file_at_out(out: Path, tmp: Path, data: Path):
    out.write_text("a file, not a folder\n")


def _file_above_out(out: Path, tmp: Path, data: Path):
    (tmp / "afile").write_text("x\n")


def _dead_rows(fraction: float, seed: int):
    return Behaviour(storm_dead=fraction, storm_seed=seed)


# (id, argv, behaviour, setup(out, tmp, data), exit code, output fragment, paths that must exist, paths that must not)
CASES = [
    # --- 1: a reply that carries no answer is a failed try of its row, never a stored ""
    *[
        (f"always-{mode}", ev(), Behaviour(mode=mode), None, 2, frag, ["{out}/run.json"], ["{out}/score.json"])
        for mode, frag in [
            ("empty-choices", "no row got an answer: 3 of 3 rows got no answer from the server (the reply has no choices x3"),
            ("null-content", "the reply has no text (content: null) x3"),
            ("other-shape", "the reply has no choices x3"),
            ("empty-text", "the reply's text is empty x3"),
        ]
    ],
    *[
        (f"once-{mode}-then-answered", ev(), Behaviour(bad_first=1, bad=mode), None, 0, "accuracy 100.0% on 3 of 3 rows",
         ["{out}/score.json", "{out}/report.html"], [])
        for mode in BROKEN
    ],  # fmt: skip
    ("some-rows-never-answered", ev("--limit", "12"), _dead_rows(0.4, 2), None, 1, "rows got no answer from the server (",
     ["{out}/score.json", "{out}/report.html"], []),
    ("http-400-fails-the-row-at-once", ev(), Behaviour(fail_first=99, fail_status=400), None, 2, "HTTP 400: slow down x3", [], ["{out}/score.json"]),
    ("http-429-after-the-retries", ev(), Behaviour(fail_first=99, fail_status=429), None, 2, "HTTP 429 x3", [], ["{out}/score.json"]),
    ("server-down", ["eval", "{data}", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--out", "{out}", "--retries", "0", "--concurrency", "2"],
     None, None, 2, "16 rows in a row got no answer (the last: cannot reach the server", [], ["{out}/score.json"]),
    # --- 4: bad replies are failed tries (retried), never a traceback
    ("always-not-json", ev(), Behaviour(mode="not-json"), None, 2, "the reply is not JSON (application/json) x3", [], []),
    ("always-html", ev(), Behaviour(mode="html"), None, 2, "the reply is not JSON (text/html) x3", [], []),
    ("always-reset", ev(), Behaviour(mode="reset"), None, 2, "cannot reach the server", [], []),
    ("lone-surrogate", ev(), Behaviour(mode="surrogate"), None, 0, "accuracy 100.0% on 3 of 3 rows", ["{out}/score.json"], []),
    # --- 7: what eval stores is what score accepts (a 1.1 MB reply keeps what the parsers read)
    ("huge-reply", ev(), Behaviour(mode="huge"), None, 0, "accuracy 100.0% on 3 of 3 rows", ["{out}/score.json"], []),
    # --- 3: the folder is locked for the run
    ("out-locked", ev(), None, _hold_lock, 2, "another linebench run (pid 4242) is writing to", [], ["{out}/run.json", "{out}/predictions.jsonl"]),
    # --- 6: odd --out
    ("out-is-a-file", ev(), None, _file_at_out, 2, "exists and is not a folder", [], []),
    ("out-below-a-file", [a.replace("{out}", "{tmp}/afile/sub") for a in ev()], None, _file_above_out, 2, "is not a folder", [], ["{tmp}/afile/sub"]),
    ("out-unwritable", [a.replace("{out}", "/proc/linebench-eval-x") for a in ev()], None, None, 2, "not writable", [], ["/proc/linebench-eval-x"]),
    ("out-empty", [a.replace("{out}", "") for a in ev()], None, None, 2, "--out is empty", [], []),
    ("out-not-utf8", [a.replace("{out}", "{tmp}/bad\udcff") for a in ev()], None, None, 2, "not valid UTF-8", [], ["{tmp}/bad\udcff"]),
    # --- 12a: a folder with one split
    ("only-a-train-split", ["eval", "{train}", "--model", "fake-vlm", "--base-url", "{url}", "--out", "{out}"], None, None, 0,
     "has one split, 'train': evaluating it", ["{out}/score.json"], []),
    ("named-split-missing", ["eval", "{train}", "--model", "fake-vlm", "--base-url", "{url}", "--out", "{out}", "--split", "test"], None, None, 2,
     "has no split 'test'; it has train", [], ["{out}"]),
    # --- 12c: score reads a file that starts with a byte order mark
    ("score-bom", ["score", "{data}", "-p", "{tmp}/bom.jsonl"], None, _bom_predictions, 0, "on 1 of 24 rows", ["{tmp}/bom.score.json"], []),
    # --- 12d: click's own errors are one line too
    ("bad-option-value", ev("--limit", "many"), None, None, 2, "Invalid value for '--limit'", [], ["{out}"]),
    ("bad-backoff", ev("--backoff", "-1"), None, None, 2, "--backoff within 0..60 s", [], ["{out}"]),
    ("unknown-option", ev("--bogus"), None, None, 2, "No such option: --bogus", [], ["{out}"]),
    ("missing-option", ["score", "{data}"], None, None, 2, "Missing option '--predictions'", [], []),
    ("unknown-command", ["evaluate", "{data}"], None, None, 2, "No such command 'evaluate'", [], []),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_eval_cases(case, data, train_only, server, tmp_path):
    _, argv, behaviour, setup, code, fragment, present, absent = case
    out = tmp_path / "run"
    server.behaviour = behaviour or Behaviour()

    def fill(text: str) -> str:
        return text.replace("{data}", str(data)).replace("{train}", str(train_only)).replace("{url}", server.url).replace("{out}", str(out)).replace("{tmp}", str(tmp_path))

    held = setup(out, tmp_path, data) if setup else None
    try:
        r = runner.invoke(app, [fill(a) for a in argv], terminal_width=200)
    finally:
        if held is not None:
            held.close()
    assert r.exit_code == code, (argv, r.output)
    text = " ".join(r.output.split())  # the console wraps long lines at 80 columns in the runner
    assert fragment in text, r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), r.output
    assert "Usage:" not in r.output and "╭" not in r.output, r.output  # no usage block, no boxed panel
    assert len([line for line in r.output.splitlines() if line.startswith("error:")]) == (code != 0), r.output
    for p in present:
        assert os.path.lexists(fill(p)), p
    for p in absent:
        assert not os.path.lexists(fill(p)), p
    preds = out / "predictions.jsonl"
    if preds.is_file():
        records = [parse_line(line) for line in preds.read_bytes().splitlines(keepends=True)]
        assert all(isinstance(rec, dict) for rec in records), records  # every line is one score accepts
        assert len({rec["id"] for rec in records}) == len(records)
        assert all(str(rec["prediction"]).strip() for rec in records)  # no empty reply stored as an answer
        assert all(n <= 3 for n in server.requests.values())  # --retries 2: at most three tries of a row
    assert not list(tmp_path.rglob("*.tmp"))


# --------------------------------------------------------------------------- 1: a rerun asks the failed rows


def test_a_rerun_asks_the_rows_that_got_no_answer_and_only_those(data, server, tmp_path):
    out = tmp_path / "run"
    args = ["eval", str(data), "--model", "fake-vlm", "--base-url", server.url, "--out", str(out), "--retries", "1", "--backoff", "0"]
    server.behaviour = _dead_rows(0.3, 7)
    r = runner.invoke(app, args, terminal_width=200)
    dead = {d for d in server.requests if _storm(server.behaviour, d, 1) in BROKEN and _storm(server.behaviour, d, 2) in BROKEN}
    assert 0 < len(dead) < 24 and r.exit_code == 1, r.output
    assert f"{len(dead)} of 24 rows got no answer" in " ".join(r.output.split())
    stored = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(stored) == 24 - len(dead) and all(server.requests[d] == 2 for d in dead)
    score = json.loads((out / "score.json").read_text())
    assert score["scored"] == 24 - len(dead) and score["missing"] == len(dead)  # not in the accuracy, reported as missing
    assert f"on {24 - len(dead)} of 24 rows" in " ".join(r.output.split())  # the console's count is the scored rows
    server.requests.clear()
    server.behaviour = Behaviour()
    r = runner.invoke(app, args, terminal_width=200)
    assert r.exit_code == 0, r.output
    assert set(server.requests) == dead and all(n == 1 for n in server.requests.values())  # only those, once
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 24 and len({json.loads(x)["id"] for x in lines}) == 24


# --------------------------------------------------------------------------- 3: two evals into one folder


def test_two_evals_into_one_folder_one_runs_the_other_is_refused(data, server, tmp_path):
    out = tmp_path / "run"
    server.behaviour = Behaviour(delay_s=0.3)  # about 4 s of asking: the second run comes while the first asks
    args = ["eval", str(data), "--model", "fake-vlm", "--base-url", server.url, "--out", str(out), "--concurrency", "2"]
    first = subprocess.Popen([sys.executable, "-m", "linebench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300  # a loaded machine takes long to start a process
    while time.time() < deadline and not (out / "predictions.jsonl").is_file():
        time.sleep(0.05)
    r = runner.invoke(app, args, terminal_width=200)
    assert r.exit_code == 2 and f"another linebench run (pid {first.pid})" in r.output, r.output
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 24 and len({x["id"] for x in lines}) == 24
    assert len(server.requests) == 24 and all(n == 1 for n in server.requests.values())  # every row asked once
    r = runner.invoke(app, args, terminal_width=200)  # the lock was released: the same command now resumes (nothing to ask)
    assert r.exit_code == 0 and "24 of 24 rows already answered" in r.output, r.output


# --------------------------------------------------------------------------- 8: the server's address is not the run


def test_a_restarted_server_on_another_port_resumes(data, server, tmp_path):
    out = tmp_path / "run"
    server.behaviour = _dead_rows(0.3, 7)
    base = ["eval", str(data), "--model", "fake-vlm", "--out", str(out), "--retries", "0", "--limit", "8"]
    r = runner.invoke(app, [*base, "--base-url", server.url], terminal_width=200)
    first = [json.loads(x)["id"] for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert r.exit_code == 1 and 0 < len(first) < 8, r.output
    other = FakeServer(server.answers).start()  # the same model, served again on another port
    try:
        assert other.url != server.url
        r = runner.invoke(app, [*base, "--base-url", other.url], terminal_width=200)
        assert r.exit_code == 0 and "holds another evaluation" not in r.output, r.output
        assert sum(other.requests.values()) == 8 - len(first)  # only the rows without an answer
        # a run folder written when the address was part of a run's identity resumes too
        run = json.loads((out / "run.json").read_text())
        run["identity"]["base_url"] = server.url
        (out / "run.json").write_text(json.dumps(run))
        r = runner.invoke(app, [*base, "--base-url", other.url], terminal_width=200)
        assert r.exit_code == 0 and "8 of 8 rows already answered" in r.output, r.output
    finally:
        other.stop()
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines][: len(first)] == first and len(lines) == 8  # the earlier answers kept


# --------------------------------------------------------------------------- 9: Ctrl-C


def test_ctrl_c_stores_every_answer_that_came_back_and_does_not_wait(data, server, tmp_path):
    from linebench.evaluate.run import EvalOptions, evaluate_folder

    server.behaviour = Behaviour(stall_after=10, stall_s=8)  # 10 answers, then requests that hang (6 s to the client's timeout)
    out = tmp_path / "run"
    opts = EvalOptions(data=str(data), model="fake-vlm", base_url=server.url, out=str(out), concurrency=14, timeout_s=6, retries=0)
    pressed = {}

    def progress(done: int, total: int) -> None:
        if done == 0 or pressed:
            return
        deadline = time.time() + 30  # the first answer is stored; wait until all ten came back, then press Ctrl-C
        while sum(server.answered.values()) < 10 and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        pressed["at"] = time.perf_counter()
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as e:
        evaluate_folder(opts, progress=progress, log=lambda m: None)
    waited = time.perf_counter() - pressed["at"]
    assert waited < 4.0, f"Ctrl-C waited {waited:.1f} s for requests in flight"
    assert e.value.exit_code == 130 and "10 of 24 rows are answered and stored" in str(e.value) and "run the same command again" in str(e.value)
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 10 and len({x["id"] for x in lines}) == 10  # the nine that came back while the first was written are kept
    server.behaviour = Behaviour()
    asked = server.total
    res = evaluate_folder(opts, log=lambda m: None)  # the lock was released: the same run resumes
    assert res["asked"] == 14 and server.total - asked == 14 and not res["failed"]


def test_ctrl_c_in_the_command_is_one_line_exit_130_at_once(data, server, tmp_path):
    server.behaviour = Behaviour(stall_after=6, stall_s=30)
    out = tmp_path / "run"
    args = ["eval", str(data), "--model", "fake-vlm", "--base-url", server.url, "--out", str(out), "--concurrency", "4", "--timeout", "30"]
    p = subprocess.Popen([sys.executable, "-m", "linebench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    preds = out / "predictions.jsonl"
    deadline = time.time() + 300  # a loaded machine takes long to start a process
    while time.time() < deadline and (not preds.is_file() or len(preds.read_text().splitlines()) < 6):
        time.sleep(0.05)
    time.sleep(0.3)  # the four stalled requests are in flight
    t0 = time.perf_counter()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert time.perf_counter() - t0 < 15, "Ctrl-C waited for the requests in flight (30 s)"
    assert p.returncode == 130, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "6 of 24 rows are answered and stored" in errors[0] and "Traceback" not in err, err
    assert len(preds.read_text().splitlines()) == 6


# --------------------------------------------------------------------------- 12b: the report


def _capture_figures(monkeypatch) -> list:
    from linebench.evaluate import report

    figures = []
    real = report._save

    def keep(fig, path):
        figures.append((Path(path).name, [(ax, [t.get_text() for t in ax.texts], list(ax.get_xticks()), ax.get_xlim()) for ax in fig.axes]))
        return real(fig, path)

    monkeypatch.setattr(report, "_save", keep)
    return figures


def test_report_isolates_model_text_labels_zero_bars_and_counts_layers_in_whole_numbers(data, server, tmp_path, monkeypatch):
    from linebench.evaluate.report import attention_plots, compare

    figures = _capture_figures(monkeypatch)
    evil = "\u202e(9, 9) evil"
    server.behaviour = Behaviour(mode="wrong")
    out = tmp_path / "run"
    r = runner.invoke(app, ["eval", str(data), "--model", "fake-vlm", "--base-url", server.url, "--out", str(out), "--limit", "6"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    lines[0]["prediction"] = evil  # what a model may answer
    (out / "predictions.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    for f in ("score.json", "gallery.json"):
        (out / f).unlink()
    r = runner.invoke(app, ["eval", str(data), "--model", "fake-vlm", "--base-url", server.url, "--out", str(out), "--limit", "6"])
    assert r.exit_code == 0, r.output
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"<bdi>{evil}</bdi>" in page and "<bdi>fake-vlm</bdi>" in page  # the override ends at the isolate
    assert page.count("\u202e") == 1
    # every level at 0%: each bar labelled, drawn as a line at zero, not an empty group
    name, axes = next(f for f in figures if f[0] == "accuracy-difficulty.png")
    assert axes[0][1] == ["0%", "0%", "0%"]
    assert any(list(line.get_ydata()) == [0, 0] for line in axes[0][0].lines)
    # the layer axis of the attention plot has whole-number ticks only
    layers = [{"layer": i, "ratio": 1.0 + i / 10, "kl": 1.0} for i in range(3)]
    attention_plots({"layers": layers, "by_level": {"easy": layers}}, tmp_path)
    name, axes = figures[-1]
    for ax, _, ticks, (lo, hi) in axes:
        shown = [t for t in ticks if lo <= t <= hi]
        assert shown and all(float(t).is_integer() for t in shown), shown
    # a comparison labels a level a run does not have as n/a, not as a 0% bar
    other = tmp_path / "other"
    server.behaviour = Behaviour()
    assert runner.invoke(app, ["eval", str(data), "--model", "fake-vlm", "--base-url", server.url, "--out", str(other), "--limit", "1"]).exit_code == 0
    compare([out, other], tmp_path / "cmp")
    name, axes = figures[-1]
    assert name == "compare.png" and "n/a" in axes[0][1] and "0%" in axes[0][1] and "100%" in axes[0][1]


# --------------------------------------------------------------------------- the storm


@pytest.fixture(scope="module")
def storm_data(tmp_path_factory):
    """500 grid-patch rows on a 128 px canvas (PNGs of about 2 KB)."""
    from linebench.dataset import generate
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    out = tmp_path_factory.mktemp("storm") / "gp"
    spec = RunSpec("grid_patch", split="test", n=500, seed=11, params=ParamSpec((128, 128), "easy", {"labels": False, "marker_size": 0.5}), maps=())
    generate(spec, out, workers=2)
    return out


def test_storm_every_row_answered_once_or_reported_failed_and_score_accepts_everything(storm_data, tmp_path):
    """429s, 500s, dropped connections, bodies that are not JSON, empty choices, slow and hanging
    replies, replies over 1 MiB and lone surrogates, over 500 rows with 32 requests in flight."""
    retries = 4
    behaviour = Behaviour(storm=0.4, storm_dead=0.01, storm_seed=3, storm_hang_s=3.0, storm_slow_s=0.2)
    server = FakeServer(truth_table(storm_data), behaviour).start()
    out = tmp_path / "run"
    args = ["eval", str(storm_data), "--model", "fake-vlm", "--base-url", server.url, "--out", str(out), "--concurrency", "32",
            "--retries", str(retries), "--backoff", "0.01", "--timeout", "2"]  # fmt: skip
    try:
        t0 = time.perf_counter()
        r = runner.invoke(app, args, terminal_width=200)
        seconds = time.perf_counter() - t0
        # what each row must get, from the storm's own draw: the first try that carries an answer, or none
        failing = {"429", "500", "hang", *BROKEN}
        expect_tries, expect_failed = {}, set()
        for d in server.answers:
            tries = [_storm(behaviour, d, n) for n in range(1, retries + 2)]
            ok = next((i + 1 for i, m in enumerate(tries) if m not in failing), None)
            expect_tries[d] = ok or retries + 1
            if ok is None:
                expect_failed.add(d)
        modes = {_storm(behaviour, d, n) for d in server.answers for n in range(1, expect_tries[d] + 1)}
        assert set(BROKEN) | {"429", "500", "hang", "slow", "huge", "surrogate"} <= modes  # the storm had every kind
        assert expect_failed and r.exit_code == 1, r.output
        assert f"{len(expect_failed)} of 500 rows got no answer" in " ".join(r.output.split()), r.output
        assert dict(server.requests) == expect_tries  # nothing asked twice: every row asked until its first answer
        stored = [parse_line(line) for line in (out / "predictions.jsonl").read_bytes().splitlines(keepends=True)]
        assert all(isinstance(x, dict) for x in stored)
        ids = [x["id"] for x in stored]
        assert len(ids) == len(set(ids)) == 500 - len(expect_failed)
        assert seconds < 240, f"the storm took {seconds:.0f} s"  # a guard against waiting out backoffs or hangs (about 11 s on 2 idle cores)
        # `linebench score` accepts every line eval stored, and every stored answer is the right one
        r = runner.invoke(app, ["score", str(storm_data), "-p", str(out / "predictions.jsonl")], terminal_width=200)
        assert r.exit_code == 0, r.output
        report = json.loads((out / "predictions.score.json").read_text())
        assert report["malformed"] == 0 and report["duplicates"] == 0 and report["unknown"] == 0
        assert report["scored"] == report["correct"] == len(ids) and report["missing"] == len(expect_failed)
        # the rerun, the storm over, asks the failed rows only, once each
        server.requests.clear()
        server.behaviour = Behaviour()
        r = runner.invoke(app, args, terminal_width=200)
        assert r.exit_code == 0, r.output
        assert sum(server.requests.values()) == len(expect_failed) and all(n == 1 for n in server.requests.values())
        assert len({json.loads(x)["id"] for x in (out / "predictions.jsonl").read_text().splitlines()}) == 500
    finally:
        server.stop()
