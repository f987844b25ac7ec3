"""Render an evaluation's report.html in a real headless browser (Chromium) and check it.

    apt-get install chromium                       # Debian's; not needed by anything else
    python benchmarks/report_browser.py            # makes a small eval run with the tiny model first
    python benchmarks/report_browser.py RUN_DIR    # or checks an existing run folder

Checks: Chromium loads the page from disk with no network (every image is a data URL), logs no
console error, and the screenshot is a real page: many colours (the plots and pictures), not a
blank or broken-image page; the DOM after load has every <img> with a data: source. Prints one
line per check and the screenshot's path; exits 1 if a check fails. (A browser is not installed
in CI, which would take minutes of its 10, so this runs here, not as a test; docs/eval.md.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]  # fmt: skip


def make_run(work: Path) -> Path:
    from linebench.dataset import generate
    from linebench.evaluate.run import EvalOptions, evaluate_folder
    from linebench.samples import RunSpec
    from linebench.tasks import ParamSpec

    generate(RunSpec("grid_patch", split="test", n=16, seed=2, params=ParamSpec((448, 448), "stratified"), maps=()), work / "data")
    out = work / "run"
    evaluate_folder(EvalOptions(data=str(work / "data"), model="tiny", limit=16, attention=True, out=str(out), max_new_tokens=8), log=lambda m: None)
    return out


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print("no Chromium on this machine (apt-get install chromium)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="lb-report-"))
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else make_run(work)
    page = (run / "report.html").resolve()
    shot = run / "report-screenshot.png"
    profile = work / "profile"
    common = [browser, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,2400"]
    p = subprocess.run([*common, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    failures = 0

    def check(ok: bool, what: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}")

    console = [line for line in p.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    check(p.returncode == 0 and shot.is_file(), f"Chromium rendered {page.name} ({shot})")
    check(not console, "no console errors" + (f": {console[:3]}" if console else ""))
    imgs = re.findall(r"<img [^>]*src=\"([^\"]{0,16})", dom)
    check(len(imgs) > 3 and all(s.startswith("data:image/png") for s in imgs), f"{len(imgs)} images, all inline data URLs")
    import cv2
    import numpy as np

    pic = cv2.imread(str(shot))
    colours = len(np.unique(pic.reshape(-1, 3) // 16, axis=0)) if pic is not None else 0
    check(colours > 50, f"the screenshot shows a page with pictures ({colours} distinct colour bins)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
