"""benchmarks/klal_effect.py end to end on the tiny model: paired replicates, the analysis, and a
second run of the same command that trains nothing (every finished run is cached)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("klal_effect", ROOT / "benchmarks" / "klal_effect.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_replicates_run_analyse_and_resume(tmp_path, monkeypatch, capsys):
    mod = _script()
    argv = ["klal_effect.py", "--tasks", "grid_patch", "--replicates", "2", "--steps", "2", "--n", "8", "--eval-n", "6", "--knob", "grid=3",
            "--eval-every", "1", "--control-steps", "3", "--jobs", "1", "--work", str(tmp_path / "work"), "--write", str(tmp_path / "results.md")]
    monkeypatch.setattr(sys, "argv", argv)
    assert mod.main() == 0
    text = (tmp_path / "results.md").read_text()
    assert "| replicate | NTP | NTP + KLAL |" in text and "Across 2 replicates" in text and "majority answer" in text
    runs = sorted((tmp_path / "work").glob("*/*-r*/result.json"))
    assert len(runs) == 5  # 2 replicates x 2 arms, and the long NTP control
    assert [p.parent.name for p in runs].count("ntp-s3-r0") == 1
    # learning curves: every evaluated step, the control's longer one too; the plot beside the report
    curve_rows = [line for line in text.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit() and "NTP" not in line]
    assert [line.split("|")[1].strip() for line in curve_rows][-4:] == ["0", "1", "2", "3"]
    assert curve_rows[-1].split("|")[2].strip() == "" and curve_rows[-1].split("|")[4].strip() != ""  # only the control reached step 3
    assert (tmp_path / "results.png").stat().st_size > 1000 and "results.png" in text
    assert "grid=3" in next((tmp_path / "work").iterdir()).name
    # the same held-out rows in every replicate, other training rows
    work = next((tmp_path / "work").iterdir())
    import json

    m0, m1 = (json.loads((work / f"data-r{r}" / "manifest.json").read_text()) for r in (0, 1))
    assert [s["seed"] for s in m0["specs"]] == [1000, 99] and [s["seed"] for s in m1["specs"]] == [1001, 99]
    assert m0["specs"][0]["knobs"] == {"grid": 3}
    # resume: nothing is trained again
    import linebench.train.run as run_mod

    monkeypatch.setattr(run_mod, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained again")))
    assert mod.main() == 0
    import re

    fresh = re.sub(r"; \d+ min of wall time for the 5 run\(s\) made now\.", ".", text)  # the first pass made 5 runs
    assert fresh != text and (tmp_path / "results.md").read_text().split("\n", 1)[1] == fresh.split("\n", 1)[1]
