"""Exceptions users see. A ``UserError`` is a mistake in what the user gave (file, option, shape);
the CLI prints its message on one line and exits with code 2. Anything else is a bug."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, options or files, with a message that says what to do."""


class BackendUnavailable(UserError, ValueError):
    """A backend was named explicitly but cannot run the layer's configuration."""
