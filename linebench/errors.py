"""The few exception classes users see. The CLI prints their message on one line and exits 2."""


class LinebenchError(Exception):
    """Base class: the message says what was wrong and what to do about it."""


class UsageError(LinebenchError):
    """Bad arguments: unknown task, impossible knobs, a bad output folder."""


class GenerationError(LinebenchError):
    """A task could not produce a valid sample with the given parameters."""


class MapError(LinebenchError):
    """A sample's targets are seen by no token of a layout (a model that crops the canvas)."""
