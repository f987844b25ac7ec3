"""benchmarks/reproduce.py, the paper's comparison as one command, end to end on the tiny model on
CPU (a short version: only the model name and the hardware change on a GPU machine)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_recipe_runs_end_to_end_on_the_tiny_model_and_resumes(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--model", "tiny", "--tasks", "grid_patch", "--n", "8",
           "--eval-n", "4", "--steps", "1", "--train-args", "--batch-size 4 --klal-backend torch", "--work", str(tmp_path), "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert first.stdout.count("-m linebench train") == 2 and "--klal" in first.stdout  # the two arms, as ordinary commands
    table = (tmp_path / "table.md").read_text()
    assert "| task | zero-shot | NTP | NTP + KLAL | paper: zero-shot | paper: NTP | paper: NTP + KLAL |" in table
    assert "| Grid Patch |" in table and "| 6.12 | 28.57 | 44.90 |" in table and "majority answer" in table
    rows = json.loads((tmp_path / "table.json").read_text())
    ntp = json.loads((tmp_path / "grid_patch-ntp" / "eval.json").read_text())
    assert rows[0]["zero_shot"] == ntp["before"]["accuracy"] and rows[0]["ntp"] == ntp["after"]["accuracy"]
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)  # finished steps are not run again
    assert again.returncode == 0 and "-m linebench train" not in again.stdout and (tmp_path / "table.md").read_text() == table
