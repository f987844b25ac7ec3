"""`python -m linebench.cli`: the console script."""

from . import run

run()
