"""benchmarks/gpu.py (issue 29's GPU check) runs end to end in its --dry-run mode on CPU, so that the
script is ready, and still right, on the day a GPU is lent: every part, shape, model and arm gets its
row, nothing fails, and the arms that compute the same KLAL agree."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# the script imports them; this process need not (find_spec: no import, no cost)
MISSING = [m for m in ("torch", "transformers", "triton", "peft") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")

ROOT = Path(__file__).resolve().parents[1]


def _rows(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    columns = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(columns, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


def _value(notes: str, name: str) -> float:
    match = re.search(rf"{name} (-?[\d.]+)", notes)
    assert match, notes
    return float(match.group(1))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "table.md"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out.read_text(), proc.stdout


def test_the_dry_run_writes_one_table_with_every_row(dry_run):
    import gpu  # benchmarks/ is on sys.path (conftest)

    text, stdout = dry_run
    assert stdout.strip().endswith(text.strip().splitlines()[-1])  # the same table on stdout
    head = text.splitlines()[0]
    for word in ("Device: CPU", "torch ", "transformers ", "triton ", "DRY RUN"):
        assert word in head
    rows = _rows(text)
    assert list(rows[0]) == list(gpu.COLUMNS)
    assert not [r for r in rows if r["notes"].startswith(("error", "failed"))]
    parts = [r["part"] for r in rows]
    assert parts == sorted(parts, key=["tests", "op", "step"].index)  # the parts in order, all present
    (test_row,) = [r for r in rows if r["part"] == "tests"]
    assert "1 passed" in test_row["notes"]  # the GPU selection collected, narrowed to one quick test

    for label, *_ in gpu.OP_SHAPES:
        arms = {r["arm"]: r for r in rows if r["part"] == "op" and r["case"].startswith(label + ":")}
        assert list(arms) == list(gpu.ARMS_OP), label
        losses = [_value(r["notes"], "loss") for r in arms.values()]
        assert max(losses) - min(losses) <= 1e-4 * max(losses), (label, losses)  # three ways to one KLAL
        assert all(float(r["ms"]) > 0 for r in arms.values())

    for name in gpu.MODELS:
        arms = {r["arm"]: r for r in rows if r["part"] == "step" and r["case"].startswith(name + ":")}
        assert list(arms) == list(gpu.ARMS_STEP), name
        capture, eager = (_value(arms[a]["notes"], "KLAL") for a in gpu.ARMS_STEP[1:])
        assert capture > 0 and abs(capture - eager) <= 1e-4 * capture, (name, capture, eager)  # the same rows and layers
        mode = "LoRA" if gpu.MODELS[name]["mode"] == "lora" else "full"
        assert mode in arms[gpu.ARMS_STEP[0]]["case"]
