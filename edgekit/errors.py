"""The errors edgekit raises for bad input.

A `UserInputError` is the user's to fix: the command-line tools print its message
as one paragraph, without a traceback, and exit with status 2. Everything else is
a bug in edgekit (or in the stack) and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class UserInputError(ValueError):
    """Bad input: says what was received, what was expected, and how to fix it."""


def received(**kwargs: Any) -> str:
    """Formats the closing `Received: name=value` clause of an error message."""
    parts = []
    for name, value in kwargs.items():
        text = repr(value)
        if len(text) > 200:
            text = text[:197] + "..."
        parts.append(f"{name}={text}")
    return "Received: " + ", ".join(parts)
