"""The few exception classes users see. The CLI prints their message on one line and exits with
their `exit_code` (2 for bad input)."""


class LinebenchError(Exception):
    """Base class: the message says what was wrong and what to do about it."""

    exit_code = 2


class UsageError(LinebenchError):
    """Bad arguments: unknown task, impossible knobs, a bad output folder."""


class GenerationError(LinebenchError):
    """A task could not produce a valid sample with the given parameters."""


class MapError(LinebenchError):
    """A sample's targets are seen by no token of a layout (a model that crops the canvas)."""


class Interrupted(LinebenchError):
    """A run stopped by Ctrl-C (exit 130) or SIGTERM (exit 143); the message says what was kept."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """Raised in the main process by the CLI's SIGTERM handler, so a `kill` unwinds like Ctrl-C
    (workers stopped, temporary files removed, one line saying what was kept)."""

    exit_code = 143
