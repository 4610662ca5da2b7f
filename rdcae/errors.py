"""The errors a user can act on: each names the setting or the file, and the commands print it
as one line. Everything in rdcae raises these where bad input enters; inner code trusts its inputs."""


class ConfigError(ValueError):
    """A setting has a value the method cannot use."""


class DataError(ValueError):
    """A dataset file exists but cannot be used as it is."""
