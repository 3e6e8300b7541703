"""appspec.yml: THE parser (a YAML subset) and model, used by ``bundle`` (delivery) and ``local`` (agent/local.py).

    spec = parse(text, "appspec.yml")          # -> AppSpec, or ConfigError naming the file and key path
    check_bundle(spec, {arcname: mode}, file)  # delivery-time: hook files in the bundle and executable,
                                               # timeouts 1..3600 s, at most 3600 s per event

The YAML subset is what CodeDeploy EC2/on-premises revisions use: block mappings, block sequences,
plain and quoted scalars, comments. Scalars stay strings (quoted ones are :class:`_Quoted`, so
``version: '0.0'`` is the string the agent refuses, not the number 0.0); flow collections, block
scalars, anchors and tags are refused with one line. The events a hook may name are
``model.AGENT_EVENTS``. Pure: no I/O here.
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.model import AGENT_EVENTS

APPSPEC_KEYS = ("version", "os", "files", "permissions", "hooks", "file_exists_behavior")
HOOK_KEYS = ("location", "timeout", "runas", "sudo")
FILE_EXISTS = ("DISALLOW", "OVERWRITE", "RETAIN")
DEFAULT_TIMEOUT = 3600        # the agent's default for a script without ``timeout``
MAX_EVENT_SECONDS = 3600      # CodeDeploy: per script and per event

# every pattern is matched with fullmatch: ``$`` would also match before a trailing newline
_KEY_LINE = re.compile(r"([A-Za-z0-9_.-]+|'[^']*'|\"[^\"]*\")[ \t]*:(?:[ \t]+(.*))?")
_DRIVE = re.compile(r"[A-Za-z]:")
_VERSION = re.compile(r"0+(\.0+)?")
_SECONDS = re.compile(r"0{0,8}[1-9][0-9]{0,8}")      # ASCII digits only ('²'.isdigit() is True), > 0, bounded
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?")


@dataclass(frozen=True)
class Script:
    location: str
    timeout: int = DEFAULT_TIMEOUT
    runas: str | None = None
    sudo: str | None = None


@dataclass(frozen=True)
class AppSpec:
    version: str
    os: str
    files: tuple[tuple[str, str], ...]
    hooks: dict[str, tuple[Script, ...]]
    file_exists_behavior: str | None = None
    permissions: Any = None


# ---------------------------------------------------------------------------------------------- YAML subset

class _Quoted(str):
    """A scalar written in quotes (YAML keeps it a string: '0.0' is not the number 0.0)."""


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and (i == 0 or line[i - 1] in " \t:-[{,"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _lines(text: str, file: str) -> list[tuple[int, str, int]]:
    """(indent, content, line number); ``- x`` becomes a ``-`` marker plus ``x`` two columns in."""
    out: list[tuple[int, str, int]] = []
    for no, raw in enumerate(text.splitlines(), 1):
        body = _strip_comment(raw).rstrip()
        if not body.strip() or body.strip() in ("---", "..."):
            continue
        lead = body[:len(body) - len(body.lstrip())]
        if "\t" in lead:
            raise ConfigError(f"{file}: line {no}: indent with spaces, not tabs")
        indent, content = len(lead), body.strip()
        while content == "-" or content.startswith("- "):
            out.append((indent, "-", no))
            rest = content[1:]
            indent += 1 + len(rest) - len(rest.lstrip(" "))
            content = rest.strip()
        if content:
            out.append((indent, content, no))
    return out


def _scalar(text: str, file: str, no: int) -> Any:
    if text[0] in "'\"":
        if len(text) < 2 or text[-1] != text[0]:
            raise ConfigError(f"{file}: line {no}: unterminated quoted string {text!r}")
        if text[0] == "'":
            return _Quoted(text[1:-1].replace("''", "'"))
        try:
            value = json.loads(text)
        except ValueError:
            raise ConfigError(f"{file}: line {no}: bad double-quoted string {text!r}") from None
        if not isinstance(value, str) or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise ConfigError(f"{file}: line {no}: bad double-quoted string {text!r}")
        return _Quoted(value)
    if text in ("[]", "{}"):
        return [] if text == "[]" else {}
    if text[0] in "[{|>&*!%@`":
        raise ConfigError(f"{file}: line {no}: {text[:20]!r}: flow collections, block scalars, anchors and tags "
                          f"are not supported in an appspec here; use plain 'key: value' lines and '- ' lists")
    return None if text in ("~", "null", "Null", "NULL") else text




def _split_key(content: str, file: str, no: int) -> tuple[str, str]:
    m = _KEY_LINE.fullmatch(content)
    if not m:
        raise ConfigError(f"{file}: line {no}: expected 'key: value' or '- item', not {content[:60]!r}")
    key = m.group(1).strip("'\"")
    return key, (m.group(2) or "").strip()


def parse_yaml_subset(text: str, file: str = "appspec.yml") -> Any:
    """Block mappings, block sequences and scalars (plain or quoted), as the appspec needs. Pure."""
    lines = _lines(text, file)
    if not lines:
        return None

    def block(i: int, indent: int) -> tuple[Any, int]:
        if lines[i][1] == "-":
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1] == "-":
                i += 1
                if i < len(lines) and lines[i][0] > indent and lines[i][1] != "-" and\
                        not _KEY_LINE.fullmatch(lines[i][1]):   # a scalar item: `- file`
                    value, i = _scalar(lines[i][1], file, lines[i][2]), i + 1
                elif i < len(lines) and lines[i][0] > indent:
                    value, i = block(i, lines[i][0])
                else:
                    value = None
                items.append(value)
            return items, i
        mapping: dict[str, Any] = {}
        while i < len(lines) and lines[i][0] == indent and lines[i][1] != "-":
            _, content, no = lines[i]
            key, rest = _split_key(content, file, no)
            if key in mapping:
                raise ConfigError(f"{file}: line {no}: key {key!r} appears twice")
            i += 1
            if rest:
                mapping[key] = _scalar(rest, file, no)
            elif i < len(lines) and (lines[i][0] > indent or (lines[i][0] == indent and lines[i][1] == "-")):
                mapping[key], i = block(i, lines[i][0])
            else:
                mapping[key] = None
        return mapping, i

    value, i = block(0, lines[0][0])
    if i < len(lines):
        raise ConfigError(f"{file}: line {lines[i][2]}: unexpected indentation")
    return value


# ---------------------------------------------------------------------------------------------- the model

def near(word: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` or `` (known: a, b, c)``, for an error message."""
    hint = difflib.get_close_matches(word, known, n=1, cutoff=0.75)
    return f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(known)})"


def norm(rel: str) -> str:
    """A bundle-relative path as its zip arcname: ``./a//b`` -> ``a/b``."""
    return "/".join(p for p in rel.replace("\\", "/").split("/") if p not in ("", "."))


def bad_relpath(rel: str) -> str | None:
    """Why ``rel`` is not a path inside the bundle root, or None."""
    if rel.startswith("/") or _DRIVE.match(rel):
        return "should be relative to the bundle root, not an absolute path"
    if ".." in rel.replace("\\", "/").split("/"):
        return "should not contain '..'"
    return None


def _fail(file: str, key: str, msg: str) -> NoReturn:
    raise ConfigError(f"{file}: {key}: {msg}")


def decode(data: bytes, file: str = "appspec.yml") -> str:
    """The appspec's bytes as text: UTF-8 (a BOM allowed), else ConfigError naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{file}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                          f"save the appspec as UTF-8") from None


def parse(text: str, file: str = "appspec.yml") -> AppSpec:
    """Read and validate an appspec into an AppSpec; ConfigError (one line) names the file and the key path."""
    raw = parse_yaml_subset(text, file)
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: should be a mapping with at least 'version: 0.0' and 'os: linux'")
    for key in raw:
        if key not in APPSPEC_KEYS:
            _fail(file, key, f"unknown key{near(key, APPSPEC_KEYS)}")
    version = raw.get("version")
    if isinstance(version, _Quoted) or not isinstance(version, str) or not _VERSION.fullmatch(version):
        _fail(file, "version", f"should be 0.0, not {version!r}")
    if raw.get("os") != "linux":
        _fail(file, "os", f"should be linux, not {raw.get('os')!r}")
    files = _parse_files(raw.get("files"), file)
    hooks = _parse_hooks(raw.get("hooks") or {}, file)
    feb = raw.get("file_exists_behavior")
    if feb is not None and feb not in FILE_EXISTS:
        _fail(file, "file_exists_behavior", f"should be one of {', '.join(FILE_EXISTS)}, not {feb!r}")
    permissions = None if "permissions" not in raw else raw["permissions"] or []
    return AppSpec(str(version), "linux", files, hooks, feb, permissions)


def _parse_files(raw: Any, file: str) -> tuple[tuple[str, str], ...]:
    """``files:``: (source in the bundle, absolute destination) pairs."""
    if raw is not None and not isinstance(raw, list):
        _fail(file, "files", "should be a list of '- source: … destination: …'")
    files = []
    for n, item in enumerate(raw or []):
        if not isinstance(item, dict) or set(item) - {"source", "destination"}:
            _fail(file, f"files/{n}", "should have only 'source' and 'destination'")
        src, dst = _path(item, "source", f"files/{n}", file), _path(item, "destination", f"files/{n}", file)
        if ".." in Path(src).parts:
            _fail(file, f"files/{n}/source", f"should stay inside the bundle, not {src!r}")
        if not dst.startswith("/") or ".." in Path(dst).parts:
            _fail(file, f"files/{n}/destination", f"should be an absolute path without '..', not {dst!r}")
        files.append((src, dst))
    return tuple(files)


def _path(item: dict[str, Any], key: str, where: str, file: str) -> str:
    val = item.get(key)
    if not isinstance(val, str) or not val or not val.isprintable():     # no newline, tab, NUL, …
        _fail(file, f"{where}/{key}", f"should be a path, not {val!r}")
    return val


def _parse_hooks(raw: Any, file: str) -> dict[str, tuple[Script, ...]]:
    """``hooks:``: lifecycle event (one of model.AGENT_EVENTS) -> its scripts, in the appspec's order."""
    if not isinstance(raw, dict):
        _fail(file, "hooks", "should be a mapping of lifecycle event -> list of scripts")
    hooks: dict[str, tuple[Script, ...]] = {}
    for event, scripts in raw.items():
        if event not in AGENT_EVENTS:
            _fail(file, f"hooks/{event}", f"unknown lifecycle event{near(event, AGENT_EVENTS)}")
        if scripts is None:
            continue
        if not isinstance(scripts, list):
            _fail(file, f"hooks/{event}", "should be a list of '- location: …'")
        hooks[event] = tuple(_parse_script(s, f"hooks/{event}/{n}", file) for n, s in enumerate(scripts))
    return hooks


def _parse_script(raw: Any, where: str, file: str) -> Script:
    """One ``- location: … timeout: … runas: …`` item of an event's list."""
    if not isinstance(raw, dict):
        _fail(file, where, "should be a mapping with 'location'")
    for key in raw:
        if key not in HOOK_KEYS:
            _fail(file, f"{where}/{key}", f"unknown key{near(key, HOOK_KEYS)}")
    loc = raw.get("location")
    if not isinstance(loc, str) or not loc.strip():
        _fail(file, f"{where}/location", "is required (a script path in the bundle)")
    if not loc.isprintable():
        _fail(file, f"{where}/location", f"should be a path without control characters, not {loc!r}")
    bad = bad_relpath(loc.strip())
    if bad:
        _fail(file, f"{where}/location", f"{bad}: {loc!r}")
    timeout = raw.get("timeout")
    if timeout is None:
        timeout = str(DEFAULT_TIMEOUT)
    if not isinstance(timeout, str) or isinstance(timeout, _Quoted) or not _SECONDS.fullmatch(timeout):
        _fail(file, f"{where}/timeout", f"should be a whole number of seconds > 0, not {timeout!r}")
    runas = raw.get("runas")
    if runas is not None and (not isinstance(runas, str) or not _USER.fullmatch(runas.strip())):
        _fail(file, f"{where}/runas", f"should be a user name, not {runas!r}")
    sudo = None if "sudo" not in raw else "" if raw["sudo"] is None else str(raw["sudo"])
    return Script(loc.strip(), int(timeout), runas.strip() if runas else None, sudo)


def check_bundle(spec: AppSpec, files: Mapping[str, int], file: str = "appspec.yml") -> None:
    """Delivery-time checks against the bundle's files (arcname -> mode): every hook is in it and
    executable, each timeout is 1..3600 s and each event's timeouts add up to at most 3600 s."""
    for event, scripts in spec.hooks.items():
        total = 0
        for n, script in enumerate(scripts):
            where = f"hooks/{event}/{n}"
            if not 1 <= script.timeout <= MAX_EVENT_SECONDS:
                _fail(file, f"{where}/timeout", f"should be a number of seconds from 1 to {MAX_EVENT_SECONDS}, "
                                                f"not {script.timeout!r}")
            total += script.timeout
            arcname = norm(script.location)
            if arcname not in files:
                _fail(file, f"{where}/location", f"{script.location!r} is not in the bundle")
            if not files[arcname] & 0o111:
                _fail(file, f"{where}/location", f"{script.location!r} is not executable (chmod +x it)")
        if total > MAX_EVENT_SECONDS:
            _fail(file, f"hooks/{event}",
                  f"timeouts add up to {total} s; CodeDeploy allows at most {MAX_EVENT_SECONDS} s per event")
