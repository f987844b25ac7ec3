"""The `linebench` command: a thin skin over the library (parse, call, report progress and errors).

One module per command, as huggingface_hub's `hf` CLI has; `base` holds the app, the one-line
error mapping and the progress bars; `options` the options several commands share. Every command
calls a library function users can call too (`dataset.generate`, `annotate.add_maps`,
`verify.verify`, `score.score`, `train.run.train`, `evaluate.run.evaluate_folder`, ...).
"""

from .base import LineProgress, app, run

# the commands register themselves on `app`, in the order `linebench --help` lists them
from . import generate, tasks, verify, score, merge, maps, grids, show, push, models, train, eval, export  # noqa: E402, F401, I001

__all__ = ["LineProgress", "app", "run"]
