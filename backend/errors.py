"""Errors a user sees. Each message names the problem and the fix; callers print it, not a traceback."""


class OccNetError(Exception):
    """Base class for every failure that should reach the user as a plain message."""


class InputError(OccNetError):
    """The observation (file, array, image) cannot be used as given."""


class OutputError(OccNetError):
    """An output cannot be written where the user asked, or would replace one of the command's inputs."""


class ModelLoadError(OccNetError):
    """A checkpoint is missing, unreadable, or does not match its architecture."""


class DeviceError(OccNetError):
    """The requested compute device is not available."""


class EmptySurfaceError(OccNetError):
    """The occupancy field never crosses the threshold, so there is no surface to mesh."""


class Cancelled(OccNetError):
    """The job was cancelled by the user; nothing was written."""

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__(message)
