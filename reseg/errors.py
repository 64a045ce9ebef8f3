"""The short exception hierarchy of reseg.

User errors (bad config, bad input files) derive from `ResegError`; the CLI
prints their message on one line and exits with `exit_code`, with no traceback.
Anything else is a bug and keeps its traceback.
"""


class ResegError(Exception):
    """Base class of errors caused by what the user gave reseg."""

    exit_code = 1


class ConfigError(ResegError):
    """The YAML configuration is invalid; the message names the key path."""

    exit_code = 2


class InputError(ResegError):
    """An input file is missing, unreadable or inconsistent; the message names it."""

    exit_code = 3


class SchemaError(ResegError):
    """A TFRecord example does not follow a schema version reseg can read."""

    exit_code = 4


class ArtifactError(ResegError):
    """An artifact directory is missing or was written by an incompatible step."""

    exit_code = 5
