"""Run lmms-eval's own task loader and evaluator on task folders, with a fake model; print JSON.

Run by tests/test_lmms_eval.py in a subprocess (lmms-eval sets up logging and patches file locks
at import; the test process stays as it was):

    python tests/lmms_eval_run.py OUT.json ANSWERS.json INCLUDE_PATH... --tasks T1,T2,GROUP

ANSWERS.json maps a row id to the answer the fake model gives. OUT.json gets lmms-eval's
results and, per task, the lines `--log_samples` writes (lmms-eval's EvaluationTracker)."""

import json
import sys
from pathlib import Path

out_path, answers_path, *rest = sys.argv[1:]
tasks = rest[rest.index("--tasks") + 1].split(",")
include = rest[: rest.index("--tasks")]

from lmms_eval import evaluator  # noqa: E402
from lmms_eval.api.model import lmms  # noqa: E402
from lmms_eval.loggers import EvaluationTracker  # noqa: E402
from lmms_eval.tasks import TaskManager  # noqa: E402

try:
    import filelock._api  # noqa: F401
except ImportError:
    # lmms-eval 0.7.3 patches filelock's private `filelock._api`, gone in filelock 4 (the
    # newest): its re-entrant-lock workaround is for nested load_dataset calls, which these
    # tasks do not make. Users on filelock 4 hit this in lmms-eval itself (docs/eval.md).
    evaluator._enable_reentrant_filelocks = lambda: None

ANSWERS = json.loads(Path(answers_path).read_text())


class Fake(lmms):
    """Answers each request with ANSWERS[doc id]; checks it got one image and the row's question."""

    def generate_until(self, requests):
        replies = []
        for r in requests:
            context, _, doc_to_visual, doc_id, task, split = r.args
            doc = self.task_dict[task][split][doc_id]
            images = doc_to_visual(doc)
            assert len(images) == 1 and images[0].mode == "RGB", images
            assert context == doc["question"], (context, doc["question"])
            replies.append(ANSWERS[doc["id"]])
        return replies

    def loglikelihood(self, requests):
        raise NotImplementedError

    def generate_until_multi_round(self, requests):
        raise NotImplementedError


manager = TaskManager(include_path=include, include_defaults=False)
tracker = EvaluationTracker(output_path=str(Path(out_path).parent / "lmms-logs"))
results = evaluator.simple_evaluate(model=Fake(), model_args="pretrained=fake", tasks=tasks, task_manager=manager, log_samples=True, evaluation_tracker=tracker)
# the sample as logged in memory (every doc column but images: what newer lmms-eval versions write)
# and the lines `--log_samples` writes (0.7.3 leaves the doc out of the file), as lmms-eval's CLI does
in_memory = {task: [len(json.dumps(s, default=str, ensure_ascii=False).encode()) for s in samples] for task, samples in results["samples"].items()}
tracker.save_results_aggregated(results=results, samples=results["samples"], datetime_str="run")
logged = {}
for task, samples in results["samples"].items():
    tracker.save_results_samples(task_name=task, samples=samples)
    (path,) = Path(tracker.output_path).rglob(f"*_samples_{task}.jsonl")
    logged[task] = [len(line) for line in path.read_bytes().splitlines()]
Path(out_path).write_text(json.dumps({"results": results["results"], "logged_bytes": logged, "sample_bytes": in_memory}, default=float))
