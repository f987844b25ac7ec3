"""`python -m linebench ...` (and `accelerate launch -m linebench train ...`): the linebench command."""

from .cli import run

if __name__ == "__main__":  # pragma: no cover
    run()
