"""`meseta lb`: a real HAProxy that follows Marathon — marathon-lb's job, event-driven.

    meseta lb --marathon http://127.0.0.1:8080 --group external --work_dir /var/lib/meseta-lb

    MarathonFollower --apps--> reload loop: render -> haproxy -c -> apply (hitless reload)
                                   |                     \\-> invalid: find the apps that break it,
                                   |                          leave them out, apply the rest
    HTTP (--http_port): /health /metrics /flags /_haproxy_getconfig /_haproxy_getpids
                        /_haproxy_getvhostmap /_haproxy_getappmap /_mlb_signal/{hup,usr1}
    HAProxy: service ports, vhosts (:80/:443), app-id router (:9091), stats (:9090, which also
             proxies the /_haproxy_* paths to the HTTP port above, as marathon-lb served them)

The reload loop coalesces: whatever changed while a render or reload was running is covered by
the next render, so a burst of a thousand status updates costs a few reloads, not a thousand.
Unchanged text is never reloaded.

An invalid config (a label HAProxy rejects, say) is never applied. The loop then searches for the
apps that make it invalid — halving the candidate set, `haproxy -c` per half, O(bad × log apps)
checks instead of marathon-lb's one check per app — and renders without them; each is logged
with HAProxy's alert and listed in /health. An excluded app is retried when its definition
changes.

Health across a Marathon failover: the renderer reports each task's last known health, kept here
(`--lru_cache_capacity` tasks); a task whose health results are empty after a leader change keeps
its last verdict instead of leaving its backend.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from meseta.config import Flag, bool_flag, duration_flag, parse_port, render_flags
from meseta.lb.follower import MarathonFollower
from meseta.log import get_logger
from meseta.metrics import Registry

__all__ = ["LB_FLAGS", "LbDaemon"]

log = get_logger("meseta.lb")


def _list(text: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(text, (list, tuple)):
        return tuple(text)
    return tuple(part.strip() for part in str(text).replace(" ", ",").split(",") if part.strip())


LB_FLAGS = (
    Flag("marathon", "http://127.0.0.1:8080", "Marathon URL(s), comma-separated; tried in order, "
         "the one that answered first next time (marathon-lb's --marathon).", _list, ",".join),
    Flag("group", ("external",), "HAProxy group(s) of apps to expose, comma-separated "
         "(an app's HAPROXY_GROUP label); '*' exposes every app.", _list, ",".join),
    Flag("work_dir", "", "Directory of haproxy.cfg, its archive and HAProxy's sockets "
                         "(default: a new temporary directory)."),
    Flag("haproxy", "", "The haproxy binary (default: haproxy on PATH, /usr/sbin, /usr/local/sbin)."),
    Flag("http_address", "127.0.0.1", "Address of this daemon's HTTP API."),
    Flag("http_port", 9089, "Port of this daemon's HTTP API (/health, /metrics, /_haproxy_*).",
         parse_port),
    Flag("bind_addr", "*", "Default bind address of every HAProxy frontend "
                           "(an app's HAPROXY_{n}_BIND_ADDR overrides it)."),
    Flag("stats_port", 9090, "HAProxy stats page (/haproxy?stats) and /_haproxy_* paths.",
         parse_port),
    Flag("vhost_http_port", 80, "Port of the HTTP virtual-host frontend (HAPROXY_{n}_VHOST).",
         parse_port),
    Flag("vhost_https_port", 443, "Port of the HTTPS virtual-host frontend (needs --ssl_certs).",
         parse_port),
    Flag("appid_port", 9091, "Port of the X-Marathon-App-Id router.", parse_port),
    bool_flag("dont_bind_http_https", False, "Leave out the :80/:443 virtual-host frontends."),
    Flag("ssl_certs", (), "Certificate files (PEM, cert and key) for the HTTPS frontend, "
                          "comma-separated; none: no HTTPS frontend.", _list, ",".join),
    bool_flag("health_check", True, "Route only to healthy tasks of apps with health checks."),
    bool_flag("strict_mode", False, "Expose only ports whose HAPROXY_{n}_ENABLED is true."),
    bool_flag("sse", True, "Accepted for marathon-lb compatibility: the event stream is always "
                           "followed."),
    Flag("min_serv_port_ip_per_task", 10050, "Lowest service port given to IP-per-task apps "
                                             "without one.", parse_port),
    Flag("max_serv_port_ip_per_task", 10100, "Highest such port.", parse_port),
    Flag("lru_cache_capacity", 100000, "Tasks whose last health is remembered across a Marathon "
                                       "failover.", int),
    Flag("archive_versions", 5, "Previous haproxy.cfg versions kept in --work_dir.", int),
    duration_flag("max_backoff", "300secs", "Longest wait between reconnects to Marathon."),
    duration_flag("sse_timeout", "60secs", "A silent event stream is reconnected after this long "
                                           "(Marathon sends keep-alives every 15 s)."),
    duration_flag("resync_interval", "5mins", "Full snapshot this often, even when events flow."),
    Flag("log_level", "info", "debug, info, warning or error."),
    Flag("log_format", "auto", "json, text, or auto (text on a terminal)."),
)


class LbDaemon:
    def __init__(self, config: Any) -> None:
        from meseta.lb.haproxy import Haproxy
        from meseta.lb.render import RenderConfig, default_resolve

        self.config = config
        binary = config.haproxy or Haproxy.find_binary()
        if not binary:
            raise ValueError("no haproxy binary: install Debian's haproxy package or pass --haproxy")
        if config.work_dir:
            self.work_dir = Path(config.work_dir)
        else:
            import tempfile
            self.work_dir = Path(tempfile.mkdtemp(prefix="meseta-lb-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.haproxy = Haproxy(self.work_dir, binary, archive_versions=config.archive_versions)
        self.resolve = default_resolve
        self._render_config_cls = RenderConfig
        self.render_config: Any = None        # set in start(), once the API port is known
        self.follower = MarathonFollower(config.marathon, self._changed,
                                         sse_timeout=config.sse_timeout,
                                         max_backoff=config.max_backoff,
                                         resync_interval=config.resync_interval)
        self.health: OrderedDict[str, bool] = OrderedDict()
        self.excluded: dict[str, tuple[str, str]] = {}     # app id -> (definition hash, reason)
        self.skipped: dict[str, str] = {}                  # app id -> why the renderer left it out
        self.stats = _Stats()
        self.metrics = Registry("meseta_lb")
        self.metrics.export_snapshot(self.metrics_snapshot)
        self.http: Any = None
        self._wake = threading.Condition()
        self._dirty = False
        self._force = False
        self._checked_skeleton: Optional[str] = None
        self._stopping = threading.Event()
        self._loop: Optional[threading.Thread] = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        from meseta.http import HttpServer
        from meseta.lb.http import create_app

        cfg = self.config
        self.http = HttpServer(create_app(self), cfg.http_address, cfg.http_port, 8, "lb-http")
        self.http.start()
        self.render_config = self._render_config_cls(
            groups=tuple(cfg.group), strict_mode=cfg.strict_mode, health_check=cfg.health_check,
            bind_http_https=not cfg.dont_bind_http_https, bind_addr=cfg.bind_addr,
            http_port=cfg.vhost_http_port, https_port=cfg.vhost_https_port,
            appid_port=cfg.appid_port, stats_port=cfg.stats_port, ssl_certs=tuple(cfg.ssl_certs),
            stats_socket=str(self.work_dir / "haproxy.sock"),
            server_state_file=str(self.work_dir / "server-state"),
            api_address=f"{_connectable(cfg.http_address)}:{self.http.port}",
            templates=_templates_from_env(os.environ),
            min_serv_port_ip_per_task=cfg.min_serv_port_ip_per_task,
            max_serv_port_ip_per_task=cfg.max_serv_port_ip_per_task)
        # HAProxy starts at once with no apps (stats page, health), so the LB is up even while
        # Marathon is not; the first snapshot follows as a normal reload.
        self._apply_apps([])
        self._loop = threading.Thread(target=self._reload_loop, name="lb-reload", daemon=True)
        self._loop.start()
        self.follower.start()
        log.info("marathon-lb started", marathon=",".join(cfg.marathon), groups=",".join(cfg.group),
                 http=self.http_url, stats=f"{_connectable(cfg.bind_addr)}:{cfg.stats_port}",
                 haproxy=self.haproxy.config_path, pid=os.getpid())

    def stop(self) -> None:
        log.info("marathon-lb stopping")
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        self.follower.stop()
        if self._loop is not None:
            self._loop.join(30)
        self.haproxy.stop()
        if self.http is not None:
            self.http.stop()

    @property
    def http_url(self) -> str:
        return f"http://{_connectable(self.config.http_address)}:{self.http.port}" if self.http else ""

    # -- signals (SIGHUP / SIGUSR1, or /_mlb_signal/...) -------------------------------------------

    def hup(self) -> None:
        """Fetch every app again and regenerate (marathon-lb's SIGHUP)."""
        self.follower.resync()

    def usr1(self) -> None:
        """Validate and reload the current config without asking Marathon (marathon-lb's SIGUSR1)."""
        with self._wake:
            self._dirty = self._force = True
            self._wake.notify_all()

    # -- the reload loop --------------------------------------------------------------------------

    def _changed(self, _reason: str) -> None:
        with self._wake:
            self._dirty = True
            self._wake.notify_all()

    def _reload_loop(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                while not self._dirty and not self._stopping.is_set():
                    self._wake.wait()
                if self._stopping.is_set():
                    return
                self._dirty, force = False, self._force
                self._force = False
            try:
                self._apply_apps(self.follower.apps.values(), force)
            except Exception:                 # a bug must not end the loop: log, keep the old config
                log.exception("regenerating the HAProxy config failed")
                self.stats.errors += 1

    def _apply_apps(self, apps: Sequence[Mapping[str, Any]], force: bool = False) -> None:
        """Render, validate and apply; leave out the apps that make the config invalid."""
        started = time.monotonic()
        apps = [app for app in apps if not self._known_bad(app)]
        rendered = self._render(apps)
        self.stats.renders += 1
        self.stats.last_render_seconds = time.monotonic() - started
        if rendered.text == self.haproxy.last_config and not force:
            return
        # A config whose only change since the last checked one is which servers a backend
        # has (same lines otherwise, server lines of the same shape) is valid by construction:
        # `haproxy -c` (40-110 ms) is skipped, which is most of the reloads of a deployment.
        skeleton = server_skeleton(rendered.text)
        known_valid = skeleton is not None and skeleton == self._checked_skeleton
        result = self.haproxy.apply(rendered.text, force=force, check=not known_valid)
        if not result.ok and not self.haproxy.check(rendered.text).ok:
            self.stats.invalid_configs += 1
            log.warning("generated HAProxy config is invalid; finding the apps that break it",
                        alert=result.reason[-2000:])
            bad = self._find_bad(apps)
            if bad is None:
                return
            apps = [app for app in apps if app.get("id") not in bad]
            rendered = self._render(apps)
            result = self.haproxy.apply(rendered.text, force=force)
            skeleton = server_skeleton(rendered.text)
        if result.ok:
            self._checked_skeleton = skeleton
        self._remember(rendered)
        if result.ok:
            self.stats.last_reload_seconds = result.seconds
            self.stats.last_apply = time.time()
            self.stats.services = len(rendered.services)
            self.stats.servers = sum(len(getattr(s, "backends", ()) or ()) for s in rendered.services)
            log.info("haproxy config applied", services=len(rendered.services),
                     reload_seconds=round(result.seconds, 3),
                     total_seconds=round(time.monotonic() - started, 3), skipped=len(rendered.skipped))
        else:
            self.stats.failed_reloads += 1
            log.error("haproxy reload failed; the previous config stays", reason=result.reason)

    def _render(self, apps: Sequence[Mapping[str, Any]]) -> Any:
        from meseta.lb.render import render_result

        rendered = render_result(apps, self.render_config, health_memory=self.health,
                                 resolve=self.resolve)
        for app_id, reason in rendered.skipped.items():
            if self.skipped.get(app_id) != reason:      # once per app and reason, not per render
                log.warning("app left out of the HAProxy config", app=app_id, reason=reason)
        self.skipped = dict(rendered.skipped)
        return rendered

    def _remember(self, rendered: Any) -> None:
        for task_id, alive in rendered.health.items():
            self.health[task_id] = alive
            self.health.move_to_end(task_id)
        while len(self.health) > self.config.lru_cache_capacity:
            self.health.popitem(last=False)

    def _known_bad(self, app: Mapping[str, Any]) -> bool:
        entry = self.excluded.get(app.get("id", ""))
        if entry is None:
            return False
        if entry[0] == _definition_hash(app):
            return True
        del self.excluded[app["id"]]            # changed since: try it again
        return False

    def _find_bad(self, apps: list[Mapping[str, Any]]) -> Optional[set[str]]:
        """The apps without which the config is valid, found by halving. None when even the
        config without any app is invalid (a bad global template: nothing to leave out)."""
        good: list[Mapping[str, Any]] = []
        bad: dict[str, str] = {}

        def valid(extra: list[Mapping[str, Any]]) -> tuple[bool, str]:
            check = self.haproxy.check(self._render(good + extra).text)
            self.stats.checks += 1
            return check.ok, check.output

        base_ok, output = valid([])
        if not base_ok:
            log.error("the HAProxy config is invalid without any app; keeping the running one",
                      alert=output[-2000:])
            return None

        def search(candidates: list[Mapping[str, Any]]) -> None:
            if not candidates:
                return
            ok, out = valid(candidates)
            if ok:
                good.extend(candidates)
            elif len(candidates) == 1:
                bad[candidates[0].get("id", "")] = _alert(out)
            else:
                middle = len(candidates) // 2
                search(candidates[:middle])
                search(candidates[middle:])

        search(list(apps))
        for app in apps:
            if app.get("id") in bad:
                reason = bad[app["id"]]
                self.excluded[app["id"]] = (_definition_hash(app), reason)
                log.error("app left out: HAProxy rejects its config", app=app["id"], reason=reason)
        return set(bad)

    # -- reads ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        running = self.haproxy.running()
        return {
            "healthy": running and self.follower.ready.is_set(),
            "haproxy": {"running": running, "pids": self.haproxy.pids(),
                        "reloads": self.haproxy.reloads, "config": str(self.haproxy.config_path)},
            "marathon": {"connected_to": self.follower.stats.connected_to,
                         "snapshot": self.follower.ready.is_set(),
                         "apps": len(self.follower.apps)},
            "services": self.stats.services,
            "excluded": {app: reason for app, (_h, reason) in self.excluded.items()},
            "skipped": dict(self.skipped),
        }

    def metrics_snapshot(self) -> dict[str, float]:
        f, s = self.follower.stats, self.stats
        return {
            "lb/apps": len(self.follower.apps), "lb/services": s.services, "lb/servers": s.servers,
            "lb/renders": s.renders, "lb/reloads": self.haproxy.reloads,
            "lb/failed_reloads": s.failed_reloads,
            "lb/invalid_configs": s.invalid_configs, "lb/config_checks": s.checks,
            "lb/excluded_apps": len(self.excluded), "lb/errors": s.errors,
            "lb/last_render_seconds": s.last_render_seconds,
            "lb/last_reload_seconds": s.last_reload_seconds,
            "lb/haproxy_running": 1.0 if self.haproxy.running() else 0.0,
            "lb/marathon_events": f.events, "lb/marathon_events_folded": f.folded,
            "lb/marathon_snapshots": f.snapshots, "lb/marathon_snapshot_errors": f.snapshot_errors,
            "lb/marathon_reconnects": f.reconnects,
            "lb/marathon_last_snapshot_seconds": f.last_snapshot_seconds,
        }

    def flags(self) -> dict[str, str]:
        return render_flags(LB_FLAGS, self.config)


class _Stats:
    def __init__(self) -> None:
        self.renders = self.failed_reloads = self.invalid_configs = 0
        self.checks = self.errors = self.services = self.servers = 0
        self.last_render_seconds = self.last_reload_seconds = self.last_apply = 0.0


_SERVER = re.compile(r"^(\s+server )(\S+) \S+ id \d+(.*)$")
_COOKIE = re.compile(r" cookie \S+")


def server_skeleton(text: str) -> Optional[str]:
    """The config with every server line reduced to its shape (name, address, id and cookie
    blanked) and runs of equal lines collapsed: two configs with the same skeleton differ only
    in which servers their backends list. None when a backend names a server twice (HAProxy
    rejects that, so such a text must be checked)."""
    lines: list[str] = []
    names: set[str] = set()
    for line in text.splitlines():
        match = _SERVER.match(line)
        if match is None:
            if not line.startswith(" "):
                names.clear()                      # a new section
            if not lines or lines[-1] != line:
                lines.append(line)
            continue
        if match.group(2) in names:
            return None
        names.add(match.group(2))
        shape = match.group(1) + "_ _ id _" + _COOKIE.sub(" cookie _", match.group(3))
        if not lines or lines[-1] != shape:
            lines.append(shape)
    return "\n".join(lines)


def _definition_hash(app: Mapping[str, Any]) -> str:
    definition = {k: v for k, v in app.items() if k not in ("tasks", "tasksRunning", "tasksStaged",
                                                             "tasksHealthy", "tasksUnhealthy",
                                                             "deployments", "lastTaskFailure")}
    return hashlib.sha1(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()


def _alert(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if "[ALERT]" in line]
    return " ".join(lines)[-1000:] or output.strip()[-1000:]


def _connectable(address: str) -> str:
    return "127.0.0.1" if address in ("", "*", "0.0.0.0", "::") else address


# marathon-lb reads its global templates from environment variables of the same name.
_GLOBAL_TEMPLATES = ("HAPROXY_HEAD", "HAPROXY_HTTP_FRONTEND_HEAD", "HAPROXY_HTTPS_FRONTEND_HEAD",
                     "HAPROXY_HTTP_FRONTEND_APPID_HEAD", "HAPROXY_GLOBAL_DEFAULT_OPTIONS")


def _templates_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in _GLOBAL_TEMPLATES if name in environ}
