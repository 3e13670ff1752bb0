"""The project's errors.

Every error MaLPi raises on purpose derives from ``MalpiError`` and from the
built-in exception that fits, so callers can catch either. Messages are
sentences that name the bad value and say how to fix it; the command-line
tools print them on one line.
"""

from __future__ import annotations


class MalpiError(Exception):
    """Base of every error MaLPi raises on purpose."""


class ConfigError(MalpiError, ValueError):
    """A configuration file or value is invalid."""


class UnknownActionError(MalpiError, ValueError):
    """A label names no known action."""


class FrameError(MalpiError, ValueError):
    """A frame has a shape or type that cannot become a model frame."""


class DriveError(MalpiError, OSError):
    """A drive folder cannot be read or written."""


class NotADriveError(DriveError):
    """A folder is not a drive (no ``drive.json``/``labels.jsonl``)."""


class ImportDataError(MalpiError, ValueError):
    """Foreign data (a DonkeyCar tub) cannot be imported."""


class ModelCardError(MalpiError, ValueError):
    """A model card is missing, malformed or does not match its model."""


class ModelError(MalpiError, RuntimeError):
    """A model cannot be loaded, checked or run."""


class HardwareError(MalpiError, RuntimeError):
    """A camera or drivetrain cannot be opened or used."""


class SearchError(MalpiError, ValueError):
    """A search folder, space file or search option is invalid."""


class DeployError(MalpiError, RuntimeError):
    """A transfer to or from the car failed."""


class SimulationError(MalpiError, ValueError):
    """A simulated world, car or camera cannot be built as asked."""
