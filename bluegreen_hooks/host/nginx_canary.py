"""The nginx side of a canary: the include that splits traffic, the per-colour access logs, and what they say.

Both include forms split in nginx itself:

* ``set`` (server context): the old colour's ``set`` lines, then ``if ($request_id ~ "^(?:…)") { … }``
  sends the requests whose random ``$request_id`` starts with one of N of the 256 two-hex-digit
  prefixes to the new colour (1/256 granularity);
* ``upstream`` (http context): one upstream with both colours, ``weight`` = the shares; maps on
  ``$upstream_addr`` tell which colour answered.

Each colour gets its own access log for the canary window (``access_log … combined if=$var``), so the
figures are nginx's own view of the real traffic. An ``access_log`` at our level replaces the ones
nginx would inherit from the level above, so the user's effective ``access_log`` lines are restated
(read from the effective config, ``nginx -T`` for the main file then crossplane for the tree).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bluegreen_hooks.config import Config
from bluegreen_hooks.model import COLOURS, Colour

_CANARY_RE = re.compile(r"^# bluegreen-hooks: app=(\S+) colour=(blue|green) deployment=\S+ canary=(blue|green):(\d+)",
                        re.M)
# one line of the predefined "combined" format: status after the quoted request, user agent last
_COMBINED_RE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "[^"]*" (\d{3}) \S+ "[^"]*" "([^"]*)"')
PROBE_AGENT = "bluegreen-hooks"      # our own verification probes: not counted


@dataclass(frozen=True)
class Split:
    """A share of the requests to ``new``; the rest to ``old``. ``restated``: the user's access_log lines."""

    old: Colour
    new: Colour
    share: int                       # percent, 1..99
    old_deployment: str
    new_deployment: str
    restated: tuple[str, ...] = ()


def log_path(cfg: Config, colour: Colour) -> Path:
    """The canary's access log of ``colour`` (in the state directory; nginx's master opens it as root)."""
    return cfg.state_dir / f"{cfg.app}.canary-{colour}.log"


def log_variable(colour: Colour) -> str:
    return f"bluegreen_canary_{colour}"


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


def _logs(cfg: Config) -> str:
    return "".join(f"access_log {log_path(cfg, c)} combined if=${log_variable(c)};\n" for c in COLOURS)


def render_split(cfg: Config, split: Split, head: str) -> str:
    """The include text of a canary step (after ``head``, the marker lines)."""
    restated = "".join(f"{line}\n" for line in split.restated)
    if cfg.nginx.form == "set":
        return head + _render_set(cfg, split) + _logs(cfg) + restated
    return head + _render_upstream(cfg, split) + _logs(cfg) + restated


def _render_set(cfg: Config, split: Split) -> str:
    old, new, cv = split.old, split.new, cfg.nginx.colour_variable
    out = "".join(f"set ${var} http://{t};\n" for var, t in _targets(cfg, old))
    out += f"set ${cv} {old};\nset ${log_variable(old)} 1;\nset ${log_variable(new)} \"\";\n"
    out += f"if ($request_id ~ \"{prefix_regex(split.share)}\") {{\n"
    out += "".join(f"    set ${var} http://{t};\n" for var, t in _targets(cfg, new))
    return out + (f"    set ${cv} {new};\n    set ${log_variable(old)} \"\";\n    set ${log_variable(new)} 1;\n"
                  f"}}\n")


def _addr_regex(cfg: Config, colour: Colour) -> str:
    """A map key matching an ``$upstream_addr`` whose last address is one of ``colour``'s."""
    alts = "|".join(re.escape(t).replace('"', "") for _, t in _targets(cfg, colour))
    return f"\"~(^|, )(?:{alts})$\""


def _render_upstream(cfg: Config, split: Split) -> str:
    old, new = split.old, split.new
    weights = {old: 100 - split.share, new: split.share}
    out = ""
    for (name, t_old), (_, t_new) in zip(_targets(cfg, old), _targets(cfg, new)):
        out += (f"upstream {name} {{\n    server {t_old} weight={weights[old]};\n"
                f"    server {t_new} weight={weights[new]};\n}}\n")
    out += (f"map $upstream_addr ${cfg.nginx.colour_variable} {{\n    {_addr_regex(cfg, new)} {new};\n"
            f"    default {old};\n}}\n")
    for c in COLOURS:
        out += f"map $upstream_addr ${log_variable(c)} {{\n    {_addr_regex(cfg, c)} 1;\n    default \"\";\n}}\n"
    return out


def include_split(cfg: Config, text: str | None) -> tuple[Colour, Colour, int] | None:
    """(old, new, share) when the include is in canary form (for this app), else None."""
    m = _CANARY_RE.search(text or "")
    if not m or m.group(1) != cfg.app:
        return None
    old: Colour = "blue" if m.group(2) == "blue" else "green"
    new: Colour = "blue" if m.group(3) == "blue" else "green"
    return old, new, int(m.group(4))


# ------------------------------------------------------------------------------------ counting answers

@dataclass
class Tally:
    """Answers nginx logged for one colour in a window: all, and those with a 5xx status."""

    requests: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, object]:
        return {"requests": self.requests, "5xx": self.errors, "rate": round(self.rate, 4)}


def offsets(cfg: Config) -> dict[Colour, int]:
    """The current end of each colour's canary log (where a new window starts)."""
    out: dict[Colour, int] = {}
    for c in COLOURS:
        try:
            out[c] = log_path(cfg, c).stat().st_size
        except OSError:
            out[c] = 0
    return out


def tally(cfg: Config, colour: Colour, start: int) -> Tally:
    """Count the answers in ``colour``'s log from byte ``start`` (whole lines only; probes left out)."""
    t = Tally()
    try:
        with open(log_path(cfg, colour), "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return t
    for raw in data.split(b"\n")[:-1]:
        m = _COMBINED_RE.match(raw.decode("utf-8", "replace"))
        if not m or m.group(2) == PROBE_AGENT:
            continue
        t.requests += 1
        t.statuses[m.group(1)] = t.statuses.get(m.group(1), 0) + 1
        if m.group(1).startswith("5"):
            t.errors += 1
    return t


def remove_logs(cfg: Config) -> None:
    for c in COLOURS:
        log_path(cfg, c).unlink(missing_ok=True)


# ------------------------------------------------------------------------------- the effective config

@dataclass(frozen=True)
class Logging:
    """The user's access_log lines that our include must restate, and why it could not (``problem``)."""

    restated: tuple[str, ...]
    problem: str | None = None


def user_access_logs(cfg: Config) -> Logging:
    """The access_log lines that apply where our include sits, found through the effective config
    (host/nginx_effective.py)."""
    from bluegreen_hooks.host import nginx_effective

    main = nginx_effective.main_file(cfg)
    if isinstance(main, str):
        return Logging((), main)
    return access_logs_for(main, cfg.nginx.include, cfg.nginx.form)


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
