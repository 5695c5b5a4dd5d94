"""Errors raised by the adapter library. Each names the problem and what to do about it."""


class AdapterError(Exception):
    """Base class of every error raised by adapterhub's library."""


class AdapterConfigError(AdapterError, ValueError):
    """An adapter configuration (preset name, option or value) is not valid."""


class AdapterNotFoundError(AdapterError, KeyError):
    """An adapter name is not known to the model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AdapterExistsError(AdapterError, ValueError):
    """An adapter with this name already exists in the model."""


class AdapterLoadError(AdapterError, OSError):
    """Saved adapter files do not fit the model or are damaged."""


class UnsupportedModelError(AdapterError, TypeError):
    """The model's architecture has no adapter description (see adapterhub.library.architectures)."""
