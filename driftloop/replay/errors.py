"""The replay's exception root: every refusal of a file, a column or an option says what to do."""

from driftloop.errors import ConfigurationError


class ReplayError(ConfigurationError):
    """The data or the options cannot be replayed as asked; the message names the fix."""
