"""Every exception selflearn raises on purpose.

Each one subclasses a built-in (so ``except ValueError`` keeps working for callers
that do not know selflearn) and :class:`SelflearnError` (so the CLI and the service
can map all of them to an exit code or a 4xx in one place). Messages follow one
shape, built by :func:`explain`: the offending value, the rule it breaks, the fix.
"""

from __future__ import annotations

__all__ = [
    "SelflearnError",
    "InvalidInputError",
    "UnreadableInputError",
    "StoreVersionError",
    "StoreBusyError",
    "NotFittedError",
    "ChannelUnavailableError",
    "NotAuthorizedError",
    "TooLargeError",
    "PrivacyKeyError",
    "OverloadedError",
    "explain",
]


def explain(value: object, rule: str, fix: str) -> str:
    """One line: ``<value>: <rule>; fix: <fix>``. Long values are shortened."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{text}: {rule}; fix: {fix}"


class SelflearnError(Exception):
    """Base class of selflearn's own errors; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InvalidInputError(SelflearnError, ValueError):
    """A value given by the user (option, file content, request) breaks a rule."""

    exit_code = 2


class UnreadableInputError(SelflearnError, OSError):
    """A path that cannot be opened or is not the format its name claims."""

    exit_code = 2


class StoreVersionError(SelflearnError, RuntimeError):
    """The store was written by another version of selflearn and cannot be used as is."""

    exit_code = 3


class StoreBusyError(SelflearnError, RuntimeError):
    """Another process holds the store's write lock."""

    exit_code = 4


class NotFittedError(SelflearnError, AttributeError):
    """A model was used before ``fit`` or ``load``."""

    exit_code = 2


class ChannelUnavailableError(SelflearnError, RuntimeError):
    """espeak-ng, sox or the Whisper model is missing on this machine."""

    exit_code = 5


class NotAuthorizedError(SelflearnError, PermissionError):
    """A caller without valid credentials (``authenticated`` False: HTTP 401) or without the scope an
    action needs (True: HTTP 403)."""

    exit_code = 2

    def __init__(self, message: str, *, authenticated: bool = False) -> None:
        super().__init__(message)
        self.authenticated = authenticated


class OverloadedError(SelflearnError, RuntimeError):
    """The service cannot answer within the request's deadline (HTTP 503 with Retry-After)."""

    exit_code = 1

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooLargeError(InvalidInputError):
    """A request, or one of its fields, is larger than the service's limit (HTTP 413)."""


class PrivacyKeyError(SelflearnError, RuntimeError):
    """The pseudonym key is missing, unreadable or not the key the store (or model) was written with."""

    exit_code = 2


class ReleaseGateError(SelflearnError, RuntimeError):
    """A model failed a release gate (the privacy audit leaked more than allowed)."""

    exit_code = 4
