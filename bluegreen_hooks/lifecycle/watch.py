"""deploy/watch_seconds: after the switch, ValidateService watches what real clients get from the new colour
before it lets the old one go.

For ``watch_seconds`` the old colour keeps running (not stopped: a switch back is one nginx reload) and
the include is in watch form (host/nginx_watch.py): per-colour access logs and, in the upstream form, the
old colour as nginx's ``backup`` server, so a new colour that dies costs a retry, not an error. Every
``POLL`` seconds the watch reads the logs and knocks on the new colour's port. Its own probes (the canary's
``Prober``: every ``probe_paths`` entry, else nginx/validate_path, through the public URL, where the new colour is
the primary, with ``probe_timeout``) count in the log like any client, so a quiet site is judged too:

* the new colour's port refuses connections (its containers died or were killed): switch back at once;
* the new colour's failed share (5xx, and 499: clients that gave up while it was pending) is above the
  rules (``max_error_rate``, from [canary] or its defaults, judged by observe/judgement.judge): switch
  back at once;
* the window ends: judged once more, fail closed: fewer than ``min_requests`` on the new colour (probes
  included) switch back unless [canary]'s ``on_too_few`` is "promote" (``rules``); and latency, once, over the
  window after its first ``WARM_UP`` seconds: the new colour's p95/p99 against the old colour's baseline
  before the switch (observe/baseline.py, recorded by ApplicationStart) with the canary's latency rule;
  else the include goes back to the plain form and the deployment goes on (drain, retire).

A switch back goes through the validation's own path (``events._switch_back``: the old colour's include,
test, reload, verify; the state's live colour; the new colour drained and removed) and the deployment
fails with the figures in its last line; the runner records it and notifies. SIGTERM (the hook's timeout)
during the window leaves the plain include of the new colour, which the state names as live.

Default: off (``watch_seconds = 0``): a deployment with it on takes ``watch_seconds`` longer in
ValidateService (the old colour's stop waits for the window); see docs/canary.md, "The watch window".
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from bluegreen_hooks.config import Config
from bluegreen_hooks.config.canary import DEFAULT_MAX_ERROR_RATE, DEFAULT_MIN_REQUESTS
from bluegreen_hooks.host import nginx, nginx_canary, nginx_watch
from bluegreen_hooks.host.wait import poll
from bluegreen_hooks.lifecycle.steps import Context, verify_mode
from bluegreen_hooks.model import Colour
from bluegreen_hooks.observe import clients, judgement

if TYPE_CHECKING:
    from bluegreen_hooks.lifecycle.canary import Prober
    from bluegreen_hooks.observe.baseline import Baseline

POLL = 0.25        # seconds between two looks at the logs and the new colour's port
WARM_UP = 3.0      # seconds after the switch whose latencies the window's latency judgement leaves out


@dataclass
class Watched:
    """The window's outcome: ``ok`` or ``back`` (switch back), why, the judgement's figures, seconds watched."""

    verdict: str
    reason: str
    judged: judgement.Verdict
    seconds: float
    new_colour: Colour
    old_colour: Colour
    baseline: Baseline | None = None    # the old colour's latency before the switch (observe/baseline.py)

    def figures(self) -> str:
        b = self.baseline
        before = f"; {self.old_colour} p95 {b.p95:.3f}s before the switch" if b and b.p95 is not None else ""
        return (f"{self.new_colour} {self.judged.new.figures()}, {self.old_colour} {self.judged.old.figures()} "
                f"in the {self.seconds:.1f}s since the switch{before}")

    def cause(self) -> str:
        """The switch back's cause for the last line: the judgement's reasons carry their figures; a dead
        port gets the window's figures added."""
        if self.judged.reasons and self.judged.reasons[0] == self.reason and "refuses" not in self.reason:
            return f"{self.new_colour} {self.reason}, {self.seconds:.1f}s after the switch"
        return f"{self.reason}; {self.figures()}"

    def receipt(self, cfg_seconds: float, form: str) -> dict[str, Any]:
        return {"window": "watch", "form": form, "watch_seconds": cfg_seconds, "seconds": round(self.seconds, 2),
                "verdict": self.verdict, "reason": self.reason, "notes": list(self.judged.notes),
                "new": {"colour": self.new_colour, **self.judged.new.to_json()},
                "old": {"colour": self.old_colour, **self.judged.old.to_json()},
                **({"baseline": self.baseline.to_json()} if self.baseline is not None else {})}


def rules(ctx: Context) -> judgement.Rules:
    """The watch judges with [canary]'s numbers when there is a [canary] table, else its defaults, and fails
    closed: too few requests on the new colour at the end of the window switch back (``on_too_few``: [canary]'s;
    "extend" has no window to extend into and aborts too; "promote" lets the deployment go on, said in its
    output). With no [canary] the probes alone must be able to meet ``min_requests`` on a quiet site: it is
    at most half the probes the window can send (``min_requests_default``)."""
    cfg = ctx.cfg
    cc = cfg.canary
    if cc is None:
        return judgement.Rules(max_error_rate=DEFAULT_MAX_ERROR_RATE, min_requests=min_requests_default(cfg),
                               on_too_few="abort")
    return judgement.Rules(max_error_rate=cc.max_error_rate, min_requests=cc.min_requests,
                           on_too_few="promote" if cc.on_too_few == "promote" else "abort")


def min_requests_default(cfg: Config) -> int:
    """min_requests of a watch with no [canary]: [canary]'s default (50), but at most half the probes sent in
    ``watch_seconds`` at the default probe_interval (a 15 s window: 15), and at least 1."""
    from bluegreen_hooks.lifecycle.canary import probe_settings

    _, interval, _ = probe_settings(cfg)
    return max(1, min(DEFAULT_MIN_REQUESTS, int(cfg.watch_seconds / interval / 2)))


def switch_in(ctx: Context, old: Colour, new: Colour, deployment_id: str, logging_since: float | None = None
              ) -> nginx.Switch:
    """ApplicationStart's switch when the watch is on: straight into the watch form (so the failure-absorbing
    upstream is in place from the first request the new colour gets), verified like ``nginx.switch``; first
    ``old``'s latency baseline from the log ``start_baseline`` began at ``logging_since``."""
    from bluegreen_hooks.lifecycle import canary

    cfg = ctx.cfg
    logging = canary.check_logging(cfg)
    take_baseline(ctx, old, logging_since)
    nginx_watch.remove_logs(cfg)
    absorb = cfg.nginx.form == "upstream"
    if logging.format_file is not None:   # set form: the log format and the watch's upstream groups
        from bluegreen_hooks.host.files import write_atomic

        write_atomic(logging.format_file, nginx_watch.format_file_text(cfg, new, old), mode=0o644)
        ctx.say(f"watch: the log format and the upstream group with {old} as backup are in "
                f"{logging.format_file} (nginx's http level)")
        absorb = True
    mode = verify_mode(ctx)   # the deployment's, decided once (lifecycle/steps.py)

    def check(before: list[list[int]]) -> str:
        if mode == "header":
            _verify_not_backup(ctx, old, new, before)
            return "verified by header"
        a = nginx.verify_generation(cfg, new, before, cfg.health.path)
        return f"verified by worker generation + HTTP {a.status}"

    from bluegreen_hooks.errors import NginxError

    try:
        sw = nginx.apply(cfg, nginx_watch.render(cfg, new, old, deployment_id, logging.restated, absorb), check)
    except NginxError as exc:   # e.g. the new colour failed its first requests: nginx left it out, the backup answered
        figures = _so_far(ctx, old, new, "the switch's verification failed")
        nginx_watch.remove_logs(cfg)
        raise NginxError(f"{exc}; {figures}") from exc
    ctx.say(f"nginx now sends traffic to {new} (test + reload + verify in {sw.seconds * 1000:.0f} ms; {sw.proof}); "
            + (f"{old} is its backup server until the watch window ends" if absorb else
               f"{old} keeps running until the watch window ends"))
    return sw


def start_baseline(ctx: Context, live: Colour, live_deployment: str
                   ) -> tuple[Callable[[], float], Callable[[], None]]:
    """ApplicationStart with the watch on, before the new colour starts: the include logs what clients get from
    ``live`` (same routing: host/nginx_watch.render_baseline), so the switch can take ``live``'s latency
    baseline (observe/baseline.py). The reload runs on a thread while the new colour is built and started. Returns
    ``began`` (waits for it: when the log began, or its error, so no switch goes over a failed nginx change) and
    ``undo``: the plain include again and the log removed, for a start that fails before the switch."""
    from concurrent.futures import ThreadPoolExecutor

    from bluegreen_hooks.lifecycle.canary import check_logging

    cfg = ctx.cfg
    logging = check_logging(cfg)   # a refusal comes first, before anything starts

    def apply() -> float:
        if logging.format_file is not None:   # set form: the log format at nginx's http level
            nginx_canary.write_format_file(cfg, logging.format_file)
        nginx_watch.remove_logs(cfg)
        text = nginx_watch.render_baseline(cfg, live, live_deployment, logging.restated)
        nginx.apply(cfg, text, lambda before: "routing unchanged")
        return time.monotonic()

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baseline")
    reload = pool.submit(apply)
    pool.shutdown(wait=False)
    ctx.say(f"watch: nginx logs what clients get from {live} until the switch (its latency baseline; the reload "
            f"runs while the new colour starts)")

    def undo() -> None:
        try:
            with contextlib.suppress(Exception):   # its own failure left the include as it was (nginx.apply)
                reload.result()
            nginx_watch.plain_again(cfg, live, live_deployment)
        except Exception as exc:   # the start's own error is the one to report; the next BeforeInstall retries
            ctx.say(f"warning: could not put back the plain include of {live}: {exc}")
    return reload.result, undo


def take_baseline(ctx: Context, old: Colour, logging_since: float | None = None) -> Baseline:
    """At the switch into the watch form: ``old``'s latency baseline from the log's tail (ApplicationStart logged
    it since ``logging_since``, monotonic: ``start_baseline``), recorded in the deployment's state for
    ValidateService and said. A short one is not waited for (the watch's cost stays its window): the watch then
    judges errors and too-few only, and says so."""
    from bluegreen_hooks.observe import baseline

    cfg = ctx.cfg
    if nginx_watch.include_baseline(cfg, nginx.read_include(cfg)) == old:
        reader = clients.LogReader(nginx_canary.clients_log(cfg))
        reader.offset = max(0, reader.offset - baseline.TAIL_BYTES)   # a torn first line is skipped
        entries, colour_of, need = reader.read(), nginx_watch.colour_by_port(cfg), rules(ctx).min_latency_samples
        base = baseline.of(entries, colour_of, old, time.time())
        if base.samples < need and logging_since is not None:
            ctx.say(f"watch: {base.samples} of {old}'s requests logged in the {time.monotonic() - logging_since:.1f}s "
                    f"before the switch, fewer than the {need} a p95 needs: latency is not judged this time")
    else:
        base = baseline.Baseline(old, why="the canary's steps judged latency" if cfg.canary is not None else
                                 "nginx did not log clients before the switch")
    with ctx.store.update() as state:
        in_progress = state.holder(ctx.deployment_id)
        if in_progress is not None:   # kept in the record's extra keys (like the receipt)
            in_progress.extra["watch_baseline"] = base.to_json()
    ctx.say(f"watch: {base.describe(rules(ctx).min_latency_samples)}")
    return base


def recorded_baseline(ctx: Context, old: Colour) -> Baseline:
    from bluegreen_hooks.observe.baseline import Baseline

    in_progress = ctx.store.read().state.holder(ctx.deployment_id)
    return Baseline.from_json(in_progress.extra.get("watch_baseline") if in_progress is not None else None, old)


def _verify_not_backup(ctx: Context, old: Colour, new: Colour, before: list[list[int]]) -> None:
    """``nginx.verify`` of the switch into the watch form, which fails at once (not after verify_timeout) when
    the new worker generation alone runs, ``old`` answers and the log shows failed attempts on ``new``: nginx
    already left ``new`` out and its backup answered."""
    from bluegreen_hooks.errors import NginxError

    cfg = ctx.cfg
    master = nginx.check_running(cfg)
    last = ["no answer yet"]
    count = _counter(ctx)

    def attempt() -> bool:
        try:
            a = nginx.probe(cfg, cfg.health.path)
        except OSError as exc:
            last[0] = f"{type(exc).__name__}: {exc}"
            return False
        last[0] = f"HTTP {a.status}, {cfg.nginx.colour_header}: {a.colour or '(none)'}"
        if a.colour == new and a.status in cfg.health.statuses:
            return True
        # an old worker may still answer for a moment: only the log's failed attempts on new prove it was left out
        if a.colour == old and nginx.rolled(master, before) is None and count(new).failed:
            raise NginxError(f"nginx's probe after the switch was answered by {old}, the backup: nginx already left "
                             f"{new} out after failed attempts")
        return False

    if not poll(attempt, cfg.nginx.verify_timeout, interval=0.01, max_interval=nginx.POLL_AFTER_RELOAD):
        raise NginxError(f"nginx at {cfg.nginx.public_url}{cfg.health.path} does not answer from {new} "
                         f"(last: {last[0]})")


def run(ctx: Context, old: Colour, new: Colour, deployment_id: str) -> tuple[Watched, list[list[int]]]:
    """Serve ``new`` in watch form for watch_seconds; returns the outcome and the nginx workers that may
    still proxy to ``old`` (the watch's generation). On ``back`` the include is still in watch form: the
    caller switches back. On ``ok`` the plain include of ``new`` is in place.

    The window counts from ApplicationStart's switch when it switched into the watch form (``switch_in``);
    otherwise (after a canary) the include is put in watch form here and the window starts now."""
    cfg = ctx.cfg
    workers: list[list[int]] = []
    # the window began at ApplicationStart's switch into the watch form (the state's live_since), so the
    # deployment waits at most watch_seconds longer than without it; else (after a canary) it begins now
    since = ctx.store.read().state.live_since or time.time()
    if nginx_watch.include_watch(cfg, nginx.read_include(cfg)) != (new, old):
        workers = switch_in(ctx, old, new, deployment_id).old_workers
        since = time.time()
    from bluegreen_hooks.lifecycle.canary import Prober

    prober = Prober(cfg, "", new)
    try:   # from here on the include is in watch form: whatever ends the window leaves the plain one
        rule = rules(ctx)
        ctx.say(f"watch window: {cfg.watch_seconds:g}s of live traffic on {new}, {old} kept running"
                + f" as nginx's backup server (a failed attempt on {new} is retried there); probes "
                + (f"of {', '.join(prober.paths)} every {prober.interval:g}s (timeout {prober.timeout:g}s)"
                   if prober.interval > 0 else "off")
                + f"; fewer than {rule.min_requests} requests on {new} by the end: "
                + ("go on (on_too_few = \"promote\")" if rule.on_too_few == "promote" else "switch back"))
        try:
            watched = _watch(ctx, old, new, since, prober.start())
        finally:   # a probe in flight may hang up to probe_timeout: the switch back does not wait for it
            prober.stop(wait=False)
        if watched.verdict == "ok":
            done = nginx.switch(cfg, new, deployment_id, ctx.say, verify_mode(ctx))
            nginx_watch.remove_logs(cfg)
            return watched, workers + done.old_workers
    except BaseException as exc:   # SIGTERM or an nginx error: leave the plain include of the live colour
        from bluegreen_hooks.errors import Interrupted

        try:
            if isinstance(exc, Interrupted):   # every wait now ends at once: write, test, reload, no probe
                nginx.apply(cfg, nginx.render_include(cfg, new, deployment_id), lambda before: "not verified")
                ctx.say(f"interrupted: nginx sends traffic to {new} alone again (plain include)")
            else:
                nginx.switch(cfg, new, deployment_id, ctx.say, verify_mode(ctx))
        finally:
            nginx_watch.remove_logs(cfg)
        raise
    return watched, workers


def _watch(ctx: Context, old: Colour, new: Colour, since: float, prober: Prober | None = None) -> Watched:
    from bluegreen_hooks.host import ports

    cfg = ctx.cfg
    t0 = time.monotonic() - max(0.0, min(time.time() - since, cfg.watch_seconds))
    rule = rules(ctx)
    count = _counter(ctx, prober.sent_ids if prober is not None else None)
    base = recorded_baseline(ctx, old)    # latency: the new colour against the old one's before the switch

    def look(final: bool) -> Watched | None:
        elapsed = time.monotonic() - t0
        tn, to = count(new), count(old)
        if not ports.answers(cfg.host, cfg.port(new)):
            v = judgement.Verdict("abort", (f"{new} refuses connections on port {cfg.port(new)}",), tn, to)
            return Watched("back", v.reasons[0], v, elapsed, new, old, base)
        done = final or elapsed >= cfg.watch_seconds
        if done:   # latency once, over the window after its warm-up: a few slow first requests decide nothing
            tn = replace(tn, latencies=count(new, since + WARM_UP).latencies)
        v = judgement.judge(tn, to, rule, can_wait=not done, baseline=base, latency=done)
        if v.outcome == "abort":
            return Watched("back", v.summary, v, elapsed, new, old, base)
        if done:
            return Watched("ok", v.summary or "within the rules", v, elapsed, new, old, base)
        return None

    left = cfg.watch_seconds - (time.monotonic() - t0)
    watched = poll(lambda: look(False), left + 5, interval=POLL, max_interval=POLL) or look(True)
    assert watched is not None
    probes = ""
    if prober is not None and prober.interval > 0:
        sent, failed, _ = prober.counts()
        probes = f"; probes {sent} sent, {failed} failed" + (f" (last: {prober.last_failure})" if failed else "")
    ctx.say(f"watch window: {watched.figures()}{probes}: "
            + (f"ok{' (' + watched.reason + ')' if watched.judged.notes else ''}" if watched.verdict == "ok"
               else f"switching back ({watched.reason})"))
    return watched


def _counter(ctx: Context, probe_ids: Callable[[], set[str]] | None = None) -> Callable[..., clients.Tally]:
    """``count(colour, since)``: what clients got from ``colour`` (every attempt) since the switch into the watch
    form (the log was removed then), or since ``since`` (epoch); ``probe_ids()``: the ids of our probes so far."""
    reader = clients.LogReader(nginx_canary.clients_log(ctx.cfg), 0)
    colour_of = nginx_watch.colour_by_port(ctx.cfg)
    seen: list[clients.Entry] = []

    def count(colour: Colour, since: float | None = None) -> clients.Tally:
        seen.extend(reader.read())
        return clients.tally(seen, colour_of, probe_ids=probe_ids() if probe_ids is not None else set(),
                             since=since)[colour]
    return count


def figures_now(ctx: Context, old: Colour, new: Colour) -> str | None:
    """What clients got so far in the watch window (the include is in watch form), for an error that ends it
    early (the validation failed: in the upstream form the new colour may be out and the backup answering)."""
    if nginx_watch.include_watch(ctx.cfg, nginx.read_include(ctx.cfg)) != (new, old):
        return None
    return _so_far(ctx, old, new, "the validation through nginx failed")


def _so_far(ctx: Context, old: Colour, new: Colour, why: str) -> str:
    """The window's figures so far, kept as the deployment's receipt (verdict "switched back")."""
    count = _counter(ctx)
    tn, to = count(new), count(old)
    v = judgement.judge(tn, to, rules(ctx))
    w = Watched("switched back", why, v, 0.0, new, old)
    save_receipt(ctx, w.receipt(ctx.cfg.watch_seconds, ctx.cfg.nginx.form))
    return f"watch window so far: {new} {tn.figures()}, {old} {to.figures()}"


def save_receipt(ctx: Context, receipt: dict[str, Any]) -> None:
    with ctx.store.update() as state:
        in_progress = state.holder(ctx.deployment_id)
        if in_progress is not None:   # kept in the record's extra keys; record_deployment copies it to the history
            in_progress.extra["receipt"] = receipt


def check_plan(ctx: Context) -> str:
    """BeforeInstall: refuse a watch window that cannot end within ValidateService's timeout in appspec.yml
    (the window, then the drain, plus a margin for the switches); return a note."""
    from bluegreen_hooks.config import appspec
    from bluegreen_hooks.errors import ConfigError
    from bluegreen_hooks.lifecycle.canary import SWITCH_MARGIN, check_logging

    cfg = ctx.cfg
    check_logging(cfg)
    path = cfg.root / "appspec.yml"
    try:
        spec = appspec.parse(path.read_text(encoding="utf-8"))
    except OSError:
        return f"watch window {cfg.watch_seconds:g}s (no {path.name} to check ValidateService's timeout against)"
    timeout = sum(s.timeout for s in spec.hooks.get("ValidateService", ())) or appspec.DEFAULT_TIMEOUT
    need = cfg.watch_seconds + cfg.drain_timeout + 2 * SWITCH_MARGIN
    if need > timeout:
        raise ConfigError(f"{cfg.path.name}: deploy/watch_seconds: the watch window needs up to {need:.0f}s of "
                          f"ValidateService ({cfg.watch_seconds:g}s + drain_timeout {cfg.drain_timeout:g}s + "
                          f"margins) but {path.name} gives it {timeout}s; shorten watch_seconds or raise the timeout")
    return f"watch window {cfg.watch_seconds:g}s fits: at most {need:.0f}s of ValidateService's {timeout}s"
