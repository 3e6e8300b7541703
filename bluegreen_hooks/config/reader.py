"""Reading one table of the raw TOML: typed getters that refuse a bad value with the key's path.

Every pattern here is matched with ``fullmatch`` against the whole value: ``$`` would also match
before a trailing newline, and a newline must never reach the nginx include or an argv.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, overload

from bluegreen_hooks.errors import ConfigError

NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*")
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/@+-]*")           # include / pid file paths: no spaces, ; { } $ # quotes
URL_PATH = re.compile(r"/[A-Za-z0-9._~!&'()*+,=:@%/?-]*")  # HTTP paths: printable, no spaces, no ; $ { } #
IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")
REL_NAME = re.compile(r"[A-Za-z0-9._/-]+")                  # a file name inside the build context
HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")


def is_host(value: str) -> bool:
    """True for an IP address (v4 or v6) or a hostname."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return HOSTNAME.fullmatch(value) is not None


class Reader:
    """Reads one table of the raw config; every refusal names ``file: prefix+key``."""

    def __init__(self, file: str, table: Mapping[str, Any], prefix: str, known: Sequence[str]) -> None:
        self.file, self.table, self.prefix = file, table, prefix
        for key in table:
            if key not in known:
                import difflib  # only for a refusal: hooks start without it

                hint = difflib.get_close_matches(key, known, n=1) or [k for k in known if k.startswith(key)][:1]
                extra = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(known)})"
                self.fail(key, f"unknown key{extra}")

    def fail(self, key: str, msg: str) -> NoReturn:
        path = f"{self.prefix}{key}"
        if not path.isprintable():       # a key from the file with a newline or control character: escape it
            path = repr(path)[1:-1]
        raise ConfigError(f"{self.file}: {path}: {msg}")

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    @overload
    def string(self, key: str, default: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str: ...

    @overload
    def string(self, key: str, default: None = None, pattern: re.Pattern[str] | None = None,
               what: str = "") -> str | None: ...

    def string(self, key: str, default: str | None = None, pattern: re.Pattern[str] | None = None,
               what: str = "") -> str | None:
        """A non-empty string (matching all of ``pattern``, when given), ``default`` when absent."""
        value = self.table.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.fail(key, f"should be a non-empty string, not {value!r}")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(key, f"should be {what}, not {value!r}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        """A number of seconds from ``low`` to ``high`` (booleans are not numbers)."""
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.fail(key, f"should be a number of seconds from {low:g} to {high:g}, not {value!r}")
        return float(value)

    @overload
    def integer(self, key: str, default: int, low: int, high: int, what: str = "an integer") -> int: ...

    @overload
    def integer(self, key: str, default: None, low: int, high: int, what: str = "an integer") -> int | None: ...

    def integer(self, key: str, default: int | None, low: int, high: int, what: str = "an integer") -> int | None:
        """An integer from ``low`` to ``high``, ``default`` when absent."""
        value = self.table.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"should be {what} ({low}-{high}), not {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"should be true or false, not {value!r}")
        return value

    def argv(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A command as a non-empty list of non-empty strings."""
        value = self.table.get(key, default)
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value or\
                not all(isinstance(a, str) and a and "\0" not in a for a in value):
            self.fail(key, f"should be a command as a list of strings, e.g. [\"nginx\", \"-t\"], not {value!r}")
        return tuple(value)

    def optional_argv(self, key: str) -> tuple[str, ...] | None:
        """A command, or None when the key is absent."""
        return None if self.table.get(key) is None else self.argv(key, ())

    def mapping(self, key: str) -> dict[str, str]:
        """A table of NAME = "value" (numbers are turned into strings)."""
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"should be a table of NAME = \"value\", not {value!r}")
        out = {}
        for name, v in value.items():
            if not IDENT.fullmatch(name):
                self.fail(f"{key}/{name}", "should be a name of letters, digits and _")
            if isinstance(v, bool) or not isinstance(v, (str, int, float)) or "\0" in str(v):
                self.fail(f"{key}/{name}", f"should be a string or number, not {v!r}")
            out[name] = str(v)
        return out

    def table_of(self, key: str) -> dict[str, Any]:
        """A sub-table (empty when absent)."""
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, "should be a table")
        return value

    def sub(self, key: str, known: Sequence[str]) -> Reader:
        """A Reader for the sub-table ``key``, its paths prefixed with ``prefix+key/``."""
        return Reader(self.file, self.table_of(key), f"{self.prefix}{key}/", known)
