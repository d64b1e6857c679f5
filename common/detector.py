"""Finding the leading master.

`--master` is `host:port` (the master's HTTP port, as with Mesos), `zk://h1:2181,h2:2181/path`
(the leader's `json.info_` node in ZooKeeper, Mesos's layout) or `tcp://host:port` (a ROUTER
directly). For `host:port` we ask the master's `/master/info`, which names the native endpoints;
a standby answers with the leader's. Resolution blocks, so daemons run it off their loop thread
(`resolve_async`); `watch()` follows a zk:// leader as it changes.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Callable

from meseta import proto


class DetectionError(RuntimeError):
    """No usable master at the address given; the text says why."""


def parse_master(spec: str) -> str:
    spec = spec.strip()
    if not spec:
        raise ValueError("--master is empty: give host:port of the master")
    if spec.startswith(("zk://", "zoo://", "tcp://")):
        return spec
    if spec.startswith("http://"):
        spec = spec[len("http://"):].rstrip("/")
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = spec, "5050"
    if not host or not port.isdigit():
        raise ValueError(f"invalid master address {spec!r}: expected host:port")
    return f"{host}:{port}"


def is_zookeeper(spec: str) -> bool:
    return spec.strip().startswith(("zk://", "zoo://"))


def resolve(spec: str, timeout: float = 2.0) -> proto.MasterInfo:
    address = parse_master(spec)
    if is_zookeeper(address):
        from meseta import zk
        try:
            return zk.detect_leader(address, timeout)
        except Exception as exc:      # kazoo's errors, no leader yet, a bad URL
            raise DetectionError(f"no leading master in {address}: {exc}") from None
    if address.startswith("tcp://"):
        host_port = address[len("tcp://"):]
        host, _, port = host_port.rpartition(":")
        return proto.MasterInfo(id="", ip=host, port=0, hostname=host, router=address)
    url = f"http://{address}/master/info"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DetectionError(f"master at {address} did not answer {url}: {exc}") from None
    native = body.get("meseta") or {}
    if not native.get("router"):
        raise DetectionError(f"{url} names no native endpoint; is {address} a Meseta master?")
    address_info = body.get("address") or {}
    return proto.MasterInfo(
        id=body.get("id", ""), ip=address_info.get("ip", ""), port=int(body.get("port", 0)),
        hostname=body.get("hostname", ""), version=body.get("version", proto.MESOS_VERSION),
        router=native["router"], publisher=native.get("publisher", ""))


def resolve_async(spec: str, done: Callable[[proto.MasterInfo | None, str], None],
                  timeout: float = 2.0) -> None:
    """Resolve on a short-lived thread; `done(info, error)` runs on that thread."""
    def work() -> None:
        try:
            info = resolve(spec, timeout)
        except (DetectionError, ValueError) as exc:
            done(None, str(exc))
        else:
            done(info, "")
    threading.Thread(target=work, name="master-detector", daemon=True).start()


def watch(spec: str, on_change: Callable[[proto.MasterInfo | None], None]):
    """Follow the leader of a zk:// master (None for host:port: nothing to watch).

    Returns an object with close(); `on_change` runs on a ZooKeeper thread."""
    if not is_zookeeper(spec):
        return None
    from meseta import zk
    return zk.MasterDetector(spec.strip(), on_change)
