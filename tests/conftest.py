import os
import sys
import tempfile
from pathlib import Path

# No network and no writes to the user's caches: everything the tests load is made here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="linebench-hf-home-"))

# Triton kernels run in the interpreter on CPU; the variable must be set before triton is imported.
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # the core package needs no torch; the KLAL tests skip themselves
    pass

# The independent pixel checkers live with the audit script (benchmarks/pixel_audit.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pytest  # noqa: E402

from linebench.samples import RunSpec  # noqa: E402
from linebench.tasks import ParamSpec  # noqa: E402


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """A small generated folder shared by read-only tests: 48 rows, 3 shards, mixed levels."""
    from linebench.dataset import generate

    out = tmp_path_factory.mktemp("ds") / "tracing"
    spec = RunSpec("tracing", split="train", n=48, seed=7)
    generate(spec, out, workers=1, shard_size=16)
    return out


@pytest.fixture
def tiny_spec():
    def make(n=24, seed=3, canvas=(448, 448), **overrides):
        return RunSpec("tracing", n=n, seed=seed, params=ParamSpec(canvas, "mixed", overrides))

    return make


@pytest.fixture(scope="module")
def linebench_cache(tmp_path_factory):
    """LINEBENCH_CACHE (where the tiny models are built) set to a fresh folder for the module, then restored."""
    path = tmp_path_factory.mktemp("lb-cache")
    old = os.environ.get("LINEBENCH_CACHE")
    os.environ["LINEBENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("LINEBENCH_CACHE", None)
    else:
        os.environ["LINEBENCH_CACHE"] = old


# The suite runs in two processes, a file at a time (-n 2 --dist loadfile). The files that take
# longest go first, so the run does not end with one process on a long file while the other idles
# (per-file times from `pytest --durations=0`, 2026-12-07; the rest keep their order). xdist would
# otherwise order the files by their number of tests.
LONGEST_FIRST = (
    "test_families.py", "test_hostile_eval.py", "test_train.py", "test_klal.py", "test_eval.py", "test_capture.py",
    "test_hostile_train.py", "test_release.py", "test_hostile.py", "test_gpu_script.py", "test_reproduce.py",
    "test_intersection.py", "test_profiles_idefics.py", "test_klal_effect.py", "test_dataset.py", "test_cli.py", "test_lmms_eval.py",
)  # fmt: skip


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable
