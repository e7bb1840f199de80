"""Errors that the CLI reports as one line (no traceback)."""


class XCompError(Exception):
    """Base class for user-facing errors: bad input, unreadable files, impossible requests."""


class VideoError(XCompError):
    """A video (file or frame folder) is missing, unreadable, corrupt or too short."""


class ConfigError(XCompError):
    """A configuration or checkpoint is invalid or incompatible."""


class PromptTooLongError(XCompError):
    """The prompt (text + visual tokens) does not fit the model's context window."""
