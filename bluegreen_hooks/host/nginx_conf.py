"""Know nginx's configuration before touching it: ``nginx -T`` parsed with crossplane, then checked.

    text = dump(cfg)                  # the effective configuration (nginx/dump, e.g. `nginx -T`)
    found = analyse(cfg, text)        # pure: which server block public_url reaches, and what it does
    found.problems / found.fixes      # what stops a switch, and the exact lines to add
    found.mode                        # "header" (the block sends the colour header) or "generation"

The server block is chosen the way nginx chooses it for ``nginx/public_url``: by listen port (and
address), then server_name, then ``default_server``. In it we look for the ``include`` that reads our
include file (globs such as ``conf.d/*.inc`` count), a ``proxy_pass`` through our variable (or
upstream), and an ``add_header`` of the colour header. crossplane is imported only here, lazily.
"""
from __future__ import annotations

import fnmatch
import glob
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable
from urllib.parse import urlsplit

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import NginxError
from bluegreen_hooks.model import VerifyMode

_FILE_RE = re.compile(r"^# configuration file (/.+):$")


@dataclass(frozen=True)
class Directive:
    """One directive of the effective configuration, with its file and line; ``block`` for ``{ … }``."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[Directive, ...] | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Analysis:
    """What the server block that ``public_url`` reaches does with our include, variable and header."""

    server: Directive | None = None
    include: Directive | None = None        # the include directive that reads our include file
    proxied: list[Directive] = field(default_factory=list)   # proxy_pass through our variable/upstream
    header: Directive | None = None         # add_header <colour header> $<colour variable>
    problems: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    @property
    def mode(self) -> VerifyMode:
        return "header" if self.header is not None else "generation"

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """One line: the server block, the include and the proxy_pass found."""
        if self.server is None:
            return "no server block found"
        parts = [f"server block {self.server.where}"]
        if self.include is not None:
            parts.append(f"include at {self.include.where}")
        if self.proxied:
            parts.append(f"proxy_pass at {', '.join(d.where for d in self.proxied)}")
        return "; ".join(parts)


# ------------------------------------------------------------------------------------------- reading

def dump_argv(cfg: Config) -> tuple[str, ...]:
    return cfg.nginx.dump


def dump(cfg: Config, timeout: float = 60) -> str:
    """The effective configuration: the output of nginx/dump (`nginx -T`, run as nginx/test is)."""
    argv = list(dump_argv(cfg))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise NginxError(f"nginx config dump: command not found: {argv[0]} (check nginx/dump)") from exc
    except subprocess.TimeoutExpired as exc:
        raise NginxError(f"nginx config dump: `{' '.join(argv)}` did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "[emerg]" in ln or "sudo:" in ln), lines[0] if lines else "")
        raise NginxError(f"nginx config dump `{' '.join(argv)}` failed: {why[:220] or f'exit {proc.returncode}'}")
    return proc.stdout


def split_dump(text: str) -> dict[str, str]:
    """``nginx -T`` output as {file path: its text}, in the order nginx read them (the main file first)."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = _FILE_RE.match(line)
        if m:
            current = files.setdefault(m.group(1), [])
            continue
        if current is not None:
            current.append(line)
    return {path: "\n".join(lines) + "\n" for path, lines in files.items()}


def parse_files(files: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Each file parsed by crossplane on its own (includes are expanded by ``expand``)."""
    import crossplane

    out: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bluegreen-nginx-") as tmp:
        for n, (path, text) in enumerate(files.items()):
            copy = Path(tmp) / f"{n}.conf"
            copy.write_text(text, encoding="utf-8")
            payload = crossplane.parse(str(copy), single=True, check_ctx=False, check_args=False,
                                       catch_errors=False)
            out[path] = payload["config"][0]["parsed"] if payload["config"] else []
    return out


def _matches(pattern: str, path: str) -> bool:
    """nginx's include glob: ``*`` does not cross ``/``."""
    pp, fp = PurePosixPath(pattern).parts, PurePosixPath(path).parts
    return len(pp) == len(fp) and all(fnmatch.fnmatchcase(f, p) for p, f in zip(pp, fp))


def _includes(pattern: str, path: str) -> bool:
    """An ``include pattern`` reads ``path``: by name, or (another name for the same file, e.g. through a
    bind mount) by file identity."""
    if _matches(pattern, path):
        return True
    try:
        return any(os.path.samefile(f, path) for f in glob.glob(pattern)) if os.path.isabs(pattern) else False
    except OSError:
        return False


def expand(parsed: Mapping[str, list[dict[str, Any]]], file: str, conf_dir: str,
           depth: int = 0) -> tuple[Directive, ...]:
    """The directives of ``file`` with every ``include`` replaced by an ``include`` block holding what it read."""
    if depth > 20:
        raise NginxError(f"nginx config: includes nested more than 20 deep at {file}")
    return tuple(_convert(d, parsed, file, conf_dir, depth) for d in parsed.get(file, ()))


def _convert(d: dict[str, Any], parsed: Mapping[str, list[dict[str, Any]]], file: str, conf_dir: str,
             depth: int) -> Directive:
    args = tuple(d.get("args", ()))
    if d["directive"] == "include" and args:
        pattern = args[0] if args[0].startswith("/") else f"{conf_dir}/{args[0]}"
        inner = tuple(x for f in parsed if _matches(pattern, f) for x in expand(parsed, f, conf_dir, depth + 1))
        return Directive("include", (pattern,), file, d["line"], inner)
    block = d.get("block")
    kids = None if block is None else tuple(_convert(b, parsed, file, conf_dir, depth) for b in block)
    return Directive(d["directive"], args, file, d["line"], kids)


def effective(text: str) -> tuple[Directive, ...]:
    """``nginx -T`` output as one tree of directives (includes expanded); NginxError when it has no file."""
    files = split_dump(text)
    if not files:
        raise NginxError("nginx config dump: no '# configuration file' sections in the output of nginx -T")
    main = next(iter(files))
    return expand(parse_files(files), main, str(PurePosixPath(main).parent))


# ------------------------------------------------------------------------------------------ choosing

def walk(ds: Sequence[Directive], into_includes: bool = True) -> Iterator[Directive]:
    """Every directive below ``ds``, depth first (through include blocks)."""
    for d in ds:
        yield d
        if d.block is not None and (into_includes or d.name != "include"):
            yield from walk(d.block, into_includes)


def _flat(ds: Sequence[Directive]) -> Iterator[Directive]:
    """The directives at this level, include blocks opened (what nginx sees in this context)."""
    for d in ds:
        if d.name == "include" and d.block is not None:
            yield from _flat(d.block)
        else:
            yield d


def servers(tree: Sequence[Directive]) -> list[Directive]:
    """The server blocks of the http block(s)."""
    return [s for h in _flat(tree) if h.name == "http" and h.block is not None
            for s in _flat(h.block) if s.name == "server" and s.block is not None]


def _listens(server: Directive) -> list[tuple[str, int, bool]]:
    """(address, port, default_server) of each TCP listen (``listen 80`` when there is none)."""
    out = []
    for d in _flat(server.block or ()):
        if d.name != "listen" or not d.args or d.args[0].startswith("unix:"):
            continue
        a = d.args[0]
        m = re.match(r"^(\[[^\]]*\]|[^:\[\]]*?)(?::(\d+))?$", a)
        if a.isdigit():
            addr, port = "*", int(a)
        elif m:
            addr, port = (m.group(1) or "*"), int(m.group(2) or 80)
        else:
            continue
        out.append((addr.strip("[]"), port, "default_server" in d.args or "default" in d.args))
    return out or [("*", 80, False)]


def _name_rank(names: Sequence[str], host: str) -> int:
    """How well ``server_name`` matches ``host``: 3 exact, 2 wildcard, 1 regex, 0 not at all."""
    best = 0
    for n in names:
        if n.lower() == host.lower():
            return 3
        wild = (n.startswith("*.") and host.endswith(n[1:])) or (n.endswith(".*") and host.startswith(n[:-1]))
        if wild or (n.startswith(".") and (host.endswith(n) or host == n[1:])):
            best = max(best, 2)
        elif n.startswith("~"):
            try:
                if re.search(n[1:], host):
                    best = max(best, 1)
            except re.error:
                pass
    return best


def reached_server(tree: Sequence[Directive], public_url: str) -> Directive | None:
    """The server block nginx answers ``public_url`` from: listen port/address, server_name, default_server."""
    url = urlsplit(public_url)
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if url.scheme == "https" else 80)
    cands = []
    for s in servers(tree):
        hits = [(addr, dflt) for addr, p, dflt in _listens(s) if p == port and addr in ("*", "", "0.0.0.0", "::", host)]
        if hits:
            names = [a for d in _flat(s.block or ()) if d.name == "server_name" for a in d.args]
            cands.append((_name_rank(names, host), any(dflt for _, dflt in hits), s))
    if not cands:
        return None
    best = max(rank for rank, _, _ in cands)
    if best > 0:
        return next(s for rank, _, s in cands if rank == best)
    return next((s for _, dflt, s in cands if dflt), cands[0][2])


# ----------------------------------------------------------------------------------------- analysing

def _targets(cfg: Config) -> list[str]:
    """What the include defines that proxy_pass must use: variables (set form) or upstreams."""
    extra = [r.variable for r in cfg.extra_routes]
    return [cfg.nginx.variable, *extra] if cfg.nginx.form == "set" else [cfg.nginx.upstream, *extra]


def _uses(cfg: Config, target: str, value: str) -> bool:
    if cfg.nginx.form == "set":
        return re.search(r"\$\{?" + re.escape(target) + r"(?![A-Za-z0-9_])", value) is not None
    return re.match(r"^https?://" + re.escape(target) + r"(?![A-Za-z0-9_.-])", value) is not None


def _find_include(cfg: Config, tree: Sequence[Directive], server: Directive) -> Directive | None:
    """The include that reads our file where it must be: in the server block (set form) or in http (upstream)."""
    path = str(cfg.nginx.include)
    if cfg.nginx.form == "set":
        scope: Sequence[Directive] = server.block or ()
    else:   # http level, outside every server block
        scope = [d for h in _flat(tree) if h.name == "http" for d in walk(h.block or ())
                 if d.name == "include" and not any(d in walk(s.block or ()) for s in servers(tree))]
    return next((d for d in walk(scope) if d.name == "include" and d.args and _includes(d.args[0], path)), None)


def _header(cfg: Config, tree: Sequence[Directive], server: Directive) -> Directive | None:
    want, var = cfg.nginx.colour_header.lower(), f"${cfg.nginx.colour_variable}"
    http_level = [d for h in _flat(tree) if h.name == "http" for d in _flat(h.block or ())]
    return next((d for d in [*walk(server.block or ()), *http_level] if d.name == "add_header" and len(d.args) >= 2
                 and d.args[0].lower() == want and var in d.args[1]), None)


def analyse(cfg: Config, text: str) -> Analysis:
    """Check ``nginx -T`` output against ``cfg`` (pure but for crossplane's temp files)."""
    tree = effective(text)
    found = Analysis()
    n = cfg.nginx
    server = reached_server(tree, n.public_url)
    if server is None:
        found.problems.append(f"no server block of nginx listens where nginx/public_url {n.public_url} points")
        found.fixes.append(f"a server block with `listen {urlsplit(n.public_url).port or 80};`")
        return found
    found.server = server
    found.include = _find_include(cfg, tree, server)
    where = f"the server block at {server.where}" if n.form == "set" else "the http block"
    if found.include is None:
        found.problems.append(f"nginx/include {n.include} is not included in {where} that {n.public_url} reaches")
        found.fixes.append(f"in {where}: include {n.include};")
    proxies = [d for d in walk(server.block or ()) if d.name == "proxy_pass" and d.args]
    for target in _targets(cfg):
        using = [d for d in proxies if _uses(cfg, target, d.args[0])]
        found.proxied += using
        if not using:
            shown = f"${target}" if n.form == "set" else f"http://{target}"
            what = "the variable" if n.form == "set" else "the upstream"
            found.problems.append(f"no proxy_pass in the server block at {server.where} uses {what} {shown} "
                                  f"that the include sets")
            found.fixes.append(f"in the server block at {server.where}: location / {{ proxy_pass {shown}; }}")
    found.header = _header(cfg, tree, server)
    return found


def header_lines(cfg: Config) -> list[str]:
    """The lines that make nginx send the colour header (the stronger verification)."""
    n = cfg.nginx
    lines = [f'set ${n.colour_variable} "";   # before the include line'] if n.form == "set" else []
    return [*lines, f"add_header {n.colour_header} ${n.colour_variable} always;"]


def mode_text(found: Analysis, cfg: Config) -> str:
    if found.mode == "header":
        return f"verified by header ({cfg.nginx.colour_header}, sent at {found.header.where if found.header else '?'})"
    return "verified by worker generation + HTTP status (the server block sends no "\
           f"{cfg.nginx.colour_header} header)"


def inspect(cfg: Config) -> Analysis:
    """Dump, parse and analyse nginx's configuration (NginxError when it cannot be dumped or parsed)."""
    try:
        return analyse(cfg, dump(cfg))
    except NginxError:
        raise
    except Exception as exc:   # crossplane's errors: the dump is not what nginx -T prints
        raise NginxError(f"nginx config: cannot parse the output of `{' '.join(dump_argv(cfg))}`: "
                         f"{type(exc).__name__}: {exc}") from exc


def check(cfg: Config, say: Callable[[str], None] | None = None) -> Analysis:
    """``inspect``; NginxError ending with the lines to add when the config cannot work (each problem and
    its fix also go to ``say``, one line each, so none is cut from a long message)."""
    found = inspect(cfg)
    if not found.ok:
        for problem, fix in zip(found.problems, found.fixes):
            if say is not None:
                say(f"nginx config: {problem}; add {fix}")
        raise NginxError(f"nginx config refused, nothing changed: {'; '.join(found.problems)}; "
                         f"add {' | '.join(found.fixes)}")
    return found


def verify_mode(cfg: Config) -> VerifyMode:
    """How a switch is proven: "header" when the reached server block sends the colour header; else
    "generation" (also when the configuration cannot be read now: the stronger check needs the header)."""
    return read_mode(cfg) or "generation"


def read_mode(cfg: Config) -> VerifyMode | None:
    """``verify_mode`` as read from the effective configuration now (``nginx -T``); None when it cannot be read."""
    try:
        return analyse(cfg, dump(cfg)).mode
    except Exception:
        return None
