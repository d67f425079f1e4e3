"""Errors raised by keymoments.

Every error the package raises on purpose derives from :class:`KeymomentsError`,
so ``except km.KeymomentsError`` catches them all. The hierarchy::

    KeymomentsError
    ├── ConfigError (ValueError)        keymoments.yaml is missing, malformed or invalid
    ├── WorkspaceError                  no workspace here, or its schema is newer than this code
    ├── SourceError                     a source file cannot be read at all (not a bad row:
    │                                   bad rows go to the quarantine table instead)
    ├── NotFoundError (LookupError)     a person, source or journey that does not exist
    ├── OutputError (OSError)           a file cannot be written (a folder that is a file,
    │                                   no permission, a full disk)
    └── MissingExtraError (ImportError) an optional dependency is not installed

Messages say what is wrong, where, and what to do:

>>> err = ConfigError("unknown key 'delimeter'", file="keymoments.yaml", line=7,
...                   key="sources.orders.csv.delimeter", hint="did you mean 'delimiter'?")
>>> print(err)
keymoments.yaml:7: sources.orders.csv.delimeter: unknown key 'delimeter' (did you mean 'delimiter'?)
"""

from __future__ import annotations

__all__ = [
    "KeymomentsError",
    "ConfigError",
    "WorkspaceError",
    "SourceError",
    "NotFoundError",
    "OutputError",
    "MissingExtraError",
]


class KeymomentsError(Exception):
    """Root of every error keymoments raises on purpose."""


class ConfigError(KeymomentsError, ValueError):
    """The configuration is invalid; carries the file, line and key at fault."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.key}: " if self.key else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{key}{self.message}{hint}"


class WorkspaceError(KeymomentsError):
    """The workspace is missing, locked, or has a schema this version cannot use."""


class SourceError(KeymomentsError):
    """A source cannot be read at all (missing file, unknown format)."""


class NotFoundError(KeymomentsError, LookupError):
    """A named thing (person, source, journey) does not exist."""


class OutputError(KeymomentsError, OSError):
    """A file cannot be written; an OSError too, so what retries a failed write (the
    outbox's case files) still sees one."""


class MissingExtraError(KeymomentsError, ImportError):
    """An optional dependency is missing; the message names the pip extra."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"this needs the optional package {module!r}: "
            f"pip install 'keymoments[{extra}]'"
        )
