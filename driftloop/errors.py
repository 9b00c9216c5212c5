"""The exception root for driftloop. Every message says what was wrong and what to do next."""


class DriftloopError(Exception):
    """Base class of every error driftloop raises on purpose."""


class ConfigurationError(DriftloopError):
    """A setting, file or argument is missing or invalid."""
