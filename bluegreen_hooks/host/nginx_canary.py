"""The nginx side of a canary: the include that splits traffic, its access log, and where its log format goes.

Both include forms split in nginx itself:

* ``set`` (server context): the old colour's ``set`` lines, then ``if ($request_id ~ "^(?:…)") { … }``
  sends the requests whose random ``$request_id`` starts with one of N of the 256 two-hex-digit
  prefixes to the new colour (1/256 granularity);
* ``upstream`` (http context): one upstream with both colours, ``weight`` = the shares; maps on
  ``$upstream_addr`` tell which colour answered.

For the canary window the include turns on one access log in the client-experience format of
observe/clients.py (``log_format`` is only allowed in nginx's http context: in the upstream form the include
holds it; in the set form a one-line file of ours next to an http-level include glob does, see
``format_file_for``), so the figures are nginx's own view of the real traffic, per attempt. The hook's own
probes carry a secret per-canary token in ``X-Bluegreen-Canary`` that routes them to the new colour (set form:
an ``if``; upstream form: a ``hash`` key the token maps to, computed to land on the new server).

An ``access_log`` at our level replaces the ones nginx would inherit from the level above, so the user's
effective ``access_log`` lines are restated (read from the effective config, ``nginx -T`` for the main file
then crossplane for the tree).
"""
from __future__ import annotations

import glob
import os
import re
import zlib
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from bluegreen_hooks.config import Config
from bluegreen_hooks.model import COLOURS, Colour

_CANARY_RE = re.compile(r"^# bluegreen-hooks: app=(\S+) colour=(blue|green) deployment=\S+ canary=(blue|green):(\d+)",
                        re.M)
# one line of the predefined "combined" format: status after the quoted request, user agent last
ROUTE_HEADER = "X-Bluegreen-Canary"  # carries the per-canary token: routes our probes to the new colour
_TOKEN_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Split:
    """A share of the requests to ``new``; the rest to ``old``. ``restated``: the user's access_log lines."""

    old: Colour
    new: Colour
    share: int                       # percent, 1..99
    old_deployment: str
    new_deployment: str
    restated: tuple[str, ...] = ()
    token: str = ""                  # 32 hex digits: requests with it in ROUTE_HEADER go to ``new`` ("" = none)


def log_path(cfg: Config, colour: Colour) -> Path:
    """The canary's access log of ``colour`` (in the state directory; nginx's master opens it as root)."""
    return cfg.state_dir / f"{cfg.app}.canary-{colour}.log"


def log_variable(colour: Colour) -> str:
    return f"bluegreen_canary_{colour}"


def clients_log(cfg: Config) -> Path:
    """The canary's access log in observe/clients.py's format (state directory; nginx's master opens it)."""
    return cfg.state_dir / f"{cfg.app}.clients.log"


def format_name(cfg: Config) -> str:
    """The app's ``log_format`` name (one per app: two apps on one nginx must not define the same)."""
    return "bluegreen_" + re.sub(r"[^a-z0-9_]", "_", cfg.app)


def format_text(cfg: Config) -> str:
    """The set form's http-level file: our header and the ``log_format`` line."""
    from bluegreen_hooks.observe.clients import log_format_directive

    return (f"# bluegreen-hooks: the log format of app {cfg.app}'s canary log (observe/clients.py); "
            f"kept for the next deployment\n{log_format_directive(format_name(cfg))}\n")


def colour_ports(cfg: Config) -> dict[str, list[int]]:
    """The ports of every routed service, per colour (to give each attempt's address its colour)."""
    return {c: cfg.colour_ports(c) for c in COLOURS}


def prefix_regex(share: int) -> str:
    """A regex matching ``round(share * 256 / 100)`` of the 256 two-hex-digit prefixes of ``$request_id``."""
    n = max(1, min(255, round(share * 256 / 100)))
    hexd = "0123456789abcdef"
    whole, part = divmod(n, 16)
    alts = []
    if whole:
        alts.append(f"[{hexd[:whole]}]")
    if part:
        alts.append(f"{hexd[whole]}[{hexd[:part]}]")
    return "^(?:" + "|".join(alts) + ")"


def real_share(share: int) -> float:
    """The percent the set form really sends (a multiple of 1/256)."""
    return max(1, min(255, round(share * 256 / 100))) * 100 / 256


def _targets(cfg: Config, colour: Colour) -> list[tuple[str, str]]:
    """(variable or upstream, host:port) of every routed service of ``colour``, the main one first."""
    main = cfg.nginx.variable if cfg.nginx.form == "set" else cfg.nginx.upstream
    return [(main, f"{cfg.host_for_url}:{cfg.port(colour)}")] + [
        (r.variable, f"{cfg.host_for_url}:{r.ports[colour]}") for r in cfg.extra_routes]


def _pick_variable(cfg: Config) -> str:
    return f"bluegreen_pick_{format_name(cfg)[len('bluegreen_'):]}"


def _proxied_variable(cfg: Config) -> str:
    return f"bluegreen_proxied_{format_name(cfg)[len('bluegreen_'):]}"


def render_split(cfg: Config, split: Split, head: str) -> str:
    """The include text of a canary step (after ``head``, the marker lines)."""
    from bluegreen_hooks.observe.clients import log_format_directive

    if split.token and not _TOKEN_RE.fullmatch(split.token):
        raise ValueError("bad canary token")
    restated = "".join(f"{line}\n" for line in split.restated)
    log = clients_log(cfg)
    if cfg.nginx.form == "set":
        return head + _render_set(cfg, split) + f"access_log {log} {format_name(cfg)};\n" + restated
    return (head + f"{log_format_directive(format_name(cfg))}\n" + _render_upstream(cfg, split)
            + f"access_log {log} {format_name(cfg)} if=${_proxied_variable(cfg)};\n" + restated)


def _render_set(cfg: Config, split: Split) -> str:
    old, new, cv = split.old, split.new, cfg.nginx.colour_variable
    out = "".join(f"set ${var} http://{t};\n" for var, t in _targets(cfg, old))
    out += f"set ${cv} {old};\n"
    tests = [f"$request_id ~ \"{prefix_regex(split.share)}\""]
    if split.token:                  # our probes: forced to the new colour, never without the token
        tests.append(f"$http_{ROUTE_HEADER.lower().replace('-', '_')} = \"{split.token}\"")
    for test in tests:
        out += f"if ({test}) {{\n"
        out += "".join(f"    set ${var} http://{t};\n" for var, t in _targets(cfg, new))
        out += f"    set ${cv} {new};\n}}\n"
    return out


def _addr_regex(cfg: Config, colour: Colour) -> str:
    """A map key matching an ``$upstream_addr`` whose last address is one of ``colour``'s."""
    alts = "|".join(re.escape(t).replace('"', "") for _, t in _targets(cfg, colour))
    return f"\"~(^|, )(?:{alts})$\""


def hash_key_for_second(first_weight: int, total: int) -> str:
    """A key that nginx's ``hash`` balancer (non-consistent: ``((crc32(key) >> 16) & 0x7fff) % total weight``,
    the servers walked in order) maps to the second server on its first try."""
    for i in range(100_000):
        key = f"bluegreen-{i}"
        if ((zlib.crc32(key.encode()) >> 16) & 0x7FFF) % total >= first_weight:
            return key
    raise ValueError("no hash key found")     # pragma: no cover - 1 in 100 keys fits even at 99 %


def _render_upstream(cfg: Config, split: Split) -> str:
    old, new = split.old, split.new
    weights = {old: 100 - split.share, new: split.share}
    out, pick = "", _pick_variable(cfg)
    if split.token:
        # requests are placed by a hash of their random $request_id (the same weighted split as round robin);
        # our probes' token maps to a key computed to land on the new colour
        out += (f"map $http_{ROUTE_HEADER.lower().replace('-', '_')} ${pick} {{\n"
                f"    \"{split.token}\" \"{hash_key_for_second(weights[old], 100)}\";\n"
                f"    default $request_id;\n}}\n")
    balance = f"    hash ${pick};\n" if split.token else ""
    for (name, t_old), (_, t_new) in zip(_targets(cfg, old), _targets(cfg, new)):
        out += (f"upstream {name} {{\n{balance}    server {t_old} weight={weights[old]};\n"
                f"    server {t_new} weight={weights[new]};\n}}\n")
    names = [name for name, _ in _targets(cfg, old)]
    out += (f"map $proxy_host ${_proxied_variable(cfg)} {{\n"
            + "".join(f"    {n} 1;\n" for n in names) + "    default \"\";\n}\n")
    out += (f"map $upstream_addr ${cfg.nginx.colour_variable} {{\n    {_addr_regex(cfg, new)} {new};\n"
            f"    default {old};\n}}\n")
    return out


def include_split(cfg: Config, text: str | None) -> tuple[Colour, Colour, int] | None:
    """(old, new, share) when the include is in canary form (for this app), else None."""
    m = _CANARY_RE.search(text or "")
    if not m or m.group(1) != cfg.app:
        return None
    old: Colour = "blue" if m.group(2) == "blue" else "green"
    new: Colour = "blue" if m.group(3) == "blue" else "green"
    return old, new, int(m.group(4))


# ------------------------------------------------------------------------------------------------ logs

def remove_logs(cfg: Config) -> None:
    clients_log(cfg).unlink(missing_ok=True)
    for c in COLOURS:                  # the per-colour logs of earlier versions
        log_path(cfg, c).unlink(missing_ok=True)


# ------------------------------------------------------------------------------- the effective config

@dataclass(frozen=True)
class Logging:
    """The user's access_log lines that our include must restate, and why it could not (``problem``)."""

    restated: tuple[str, ...]
    problem: str | None = None
    format_file: Path | None = None  # set form: the http-level file of ours that holds the log_format


def user_access_logs(cfg: Config) -> Logging:
    """The access_log lines that apply where our include sits, found through the effective config
    (host/nginx_effective.py)."""
    from bluegreen_hooks.host import nginx_effective

    main = nginx_effective.main_file(cfg)
    if isinstance(main, str):
        return Logging((), main)
    found = access_logs_for(main, cfg.nginx.include, cfg.nginx.form)
    if found.problem or cfg.nginx.form != "set":
        return found
    where = format_file_for(main, cfg.nginx.include, cfg.app)
    if isinstance(where, str):
        return Logging(found.restated, where)
    return Logging(found.restated, None, where)


def format_file_names(app: str) -> tuple[str, ...]:
    """The names our http-level log-format file may take (the second sorts before most others)."""
    return (f"bluegreen-hooks-{app}.conf", f"00-bluegreen-hooks-{app}.conf")


def format_file_for(main: Path, include: Path, app: str) -> Path | str:
    """Where the set form's ``log_format`` can live: a file of ours that an ``include`` glob directly in the
    http block picks up, in a folder we may write, read by nginx *before* the server block that includes
    ``include`` (nginx needs a log format defined before an access_log names it). A string says why there is
    none and what to add."""
    from bluegreen_hooks.host.nginx_effective import parse

    files = parse(main)
    target = include.resolve()
    index = next((i for i, f in enumerate(files) if Path(f["file"]).resolve() == target), None)
    chain = _find_include(files, 0, index, []) if index is not None else None
    http = next((d for d in reversed(chain or []) if d["directive"] == "http"), None)
    fix = (f"add `include {main.parent / 'bluegreen-hooks'}/*.conf;` near the top of the http block of {main} "
           f"(a folder the hooks may write), or use nginx/form = \"upstream\", or remove the [canary] table")
    if http is None or index is None:
        return f"{include} is not included inside an nginx http block; {fix}"
    seen = []
    for d in http.get("block", []):
        if d["directive"] != "include" or not d.get("args"):
            continue
        pattern = Path(d["args"][0]) if os.path.isabs(d["args"][0]) else main.parent / d["args"][0]
        if glob.has_magic(str(pattern.parent)) or not glob.has_magic(pattern.name):
            continue
        folder = pattern.parent
        for name in format_file_names(app):
            if not fnmatch(name, pattern.name):
                continue
            path = folder / name
            seen.append(str(pattern))
            if not _before(files, http, d, name, index):
                continue
            if path.exists() and not path.read_text(encoding="utf-8", errors="replace").startswith(
                    "# bluegreen-hooks: the log format"):
                return f"{path} exists and is not ours; {fix}"
            if not os.access(folder, os.W_OK | os.X_OK) and not os.access(path, os.W_OK):
                return f"cannot write {path} (for the canary's log_format at nginx's http level); {fix}"
            return path
    why = (f"the http-level include(s) {', '.join(seen)} are read after the server block" if seen else
           "no include glob in the http block picks up a file of ours")
    return f"nginx/form = \"set\" needs a log_format at nginx's http level and {why}; {fix}"


def _before(files: list[dict], http: dict, glob_include: dict, name: str, index: int) -> bool:
    """Does nginx read ``name`` (pulled in by ``glob_include``, sorted among its matches) before the include
    directive of file ``index``? (nginx reads depth first, a glob's files in sorted order.)"""
    state = {"seen": False}

    def walk(block: list[dict], via: str | None) -> bool | None:
        for d in block:
            inc = d.get("includes") or []
            if d is glob_include:
                state["seen"] = True
            if d["directive"] == "include" and index in inc:
                if not state["seen"]:
                    return False
                return via is None or name < via
            for i in inc:
                child_via = Path(files[i]["file"]).name if d is glob_include else via
                found = walk(files[i].get("parsed", []), child_via)
                if found is not None:
                    return found
            if "block" in d:
                found = walk(d["block"], via)
                if found is not None:
                    return found
        return None

    return bool(walk(files[0].get("parsed", []), None))


def write_format_file(cfg: Config, path: Path) -> bool:
    """Write the set form's log-format file (atomically) unless it already holds this text; True when written."""
    from bluegreen_hooks.host.files import write_atomic

    text = format_text(cfg)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    write_atomic(path, text, mode=0o644)
    return True


_DEFAULT_LOG = ("logs/access.log", "combined")   # what nginx logs to when no level names an access_log


def access_logs_for(main: Path, include: Path, form: str) -> Logging:
    """The lines to restate at the level where ``include`` is included (server for ``set``, http for
    ``upstream``), from the config tree rooted at ``main`` (parsed with crossplane)."""
    from bluegreen_hooks.host.nginx_effective import parse

    files = parse(main)
    target = include.resolve()
    index = next((i for i, f in enumerate(files) if Path(f["file"]).resolve() == target), None)
    if index is None:
        return Logging((), f"{include} is not included by {main}")
    chain = _find_include(files, 0, index, [])
    if chain is None:
        return Logging((), f"{include} is not included by {main}")
    level = "server" if form == "set" else "http"
    owner = next((d for d in reversed(chain) if d["directive"] == level), None)
    if owner is None:
        return Logging((), f"{include} is not included inside an nginx {level} block (nginx/form = {form!r})")
    mine = _access_logs(files, owner.get("block", []), index)
    if any(a[:1] == ["off"] for a in mine):
        return Logging((), f"`access_log off` in the {level} block that includes {include} would also turn off "
                           f"the canary's logs")
    if mine:
        return Logging(())        # ours are added at the same level: theirs keep working
    if level == "server":
        http = next((d for d in reversed(chain) if d["directive"] == "http"), None)
        above = _access_logs(files, http.get("block", []) if http else [], index)
        if any(a[:1] == ["off"] for a in above):
            return Logging(())    # the user logs nothing here: restate nothing
        if above:
            return Logging(tuple(_line(a) for a in above))
    return Logging((_line(list(_DEFAULT_LOG)),))


def _find_include(files: list[dict], file_index: int, index: int, parents: list[dict]) -> list[dict] | None:
    """The chain of blocks (outermost first) around the include directive that pulls in file ``index``."""
    return _search(files, files[file_index].get("parsed", []), index, parents)


def _search(files: list[dict], block: list[dict], index: int, parents: list[dict]) -> list[dict] | None:
    for d in block:
        inc = d.get("includes") or []
        if d["directive"] == "include" and index in inc:
            return parents
        for i in inc:
            found = _find_include(files, i, index, parents)
            if found is not None:
                return found
        if "block" in d:
            found = _search(files, d["block"], index, [*parents, d])
            if found is not None:
                return found
    return None


def _access_logs(files: list[dict], block: list[dict], skip: int) -> list[list[str]]:
    """The args of every access_log directly in ``block`` (or in files it includes, except file ``skip``)."""
    out = []
    for d in block:
        if d["directive"] == "access_log":
            out.append(list(d.get("args", [])))
        for i in d.get("includes") or []:
            if i != skip:
                out += _access_logs(files, files[i].get("parsed", []), skip)
    return out


def _line(args: list[str]) -> str:
    """One access_log directive, quoted by crossplane's builder (the args come from nginx's own config)."""
    import crossplane

    return str(crossplane.build([{"directive": "access_log", "args": args}]).strip())
