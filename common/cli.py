"""`meseta`: the daemons, the embedded cluster and the client commands.

    meseta master [--flag=value ...]       a master (flags in Mesos's spellings; --help)
    meseta agent  [--flag=value ...]       an agent
    meseta marathon [--flag=value ...]     Marathon (REST API v2 on --http_port)
    meseta dns [--config config.json] [--key=value ...]   Mesos-DNS (config.json keys as flags)
    meseta dns lookup <name> [--type SRV] [--server 127.0.0.1:53]
    meseta lb --marathon URL --group external [--flag=value ...]   HAProxy following Marathon
    meseta up [--agents N]                 master + N agents in one process, until Ctrl-C
    meseta agent list | framework list | task list|kill|log   (client commands, --json)
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Callable, Sequence

import click

from meseta import __version__
from meseta.config import ConfigError, Flag, load_config, usage
from meseta.log import setup_logging


def _wait_for_signal(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> int:
    """Block until one of `signals` arrives; returns which."""
    stop = threading.Event()
    received: list[int] = []

    def handler(sig: int, _frame: Any) -> None:
        received.append(sig)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return received[0]


def _run_daemon(command: str, flags: Sequence[Flag], argv: Sequence[str],
                factory: Callable[[Any], Any],
                stop: Callable[[Any, int], None] = lambda daemon, sig: daemon.stop(),
                signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
                started: Callable[[Any], None] = lambda daemon: None) -> None:
    if any(arg in ("--help", "-h") for arg in argv):
        click.echo(usage(command, flags))
        return
    try:
        config = load_config(flags, argv, os.environ)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    setup_logging("warning" if getattr(config, "quiet", False) else config.log_level, config.log_format)
    try:
        daemon = factory(config)
        daemon.start()
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{command} failed to start: {exc}") from None
    started(daemon)
    stop(daemon, _wait_for_signal(signals))


class _DaemonOrGroup(click.Group):
    """`meseta agent --flags` runs the daemon; `meseta agent list` is a client command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            return super().parse_args(ctx, args)
        ctx.meta["daemon_args"] = list(args)
        ctx.invoked_subcommand = None
        return []

    def invoke(self, ctx: click.Context) -> Any:
        if "daemon_args" in ctx.meta:
            return ctx.invoke(self.callback, **ctx.params)
        return super().invoke(ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meseta")
def main() -> None:
    """Meseta: a resource-offer cluster manager in the Mesos family."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def master(args: tuple[str, ...]) -> None:
    """Run a master (meseta master --help for its flags)."""
    from meseta.master.daemon import MASTER_FLAGS, MasterDaemon
    _run_daemon("master", MASTER_FLAGS, args, MasterDaemon)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def marathon(args: tuple[str, ...]) -> None:
    """Run Marathon, the long-running service framework (meseta marathon --help)."""
    from meseta.frameworks.marathon.daemon import MARATHON_FLAGS, MarathonDaemon
    # SIGTERM leaves the tasks running: the framework fails over to the next leader.
    _run_daemon("marathon", MARATHON_FLAGS, args, MarathonDaemon)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def lb(args: tuple[str, ...]) -> None:
    """Run the load balancer: HAProxy following Marathon (meseta lb --help)."""
    from meseta.lb.daemon import LB_FLAGS, LbDaemon

    def signals(daemon: LbDaemon) -> None:
        # marathon-lb's signals: SIGHUP fetches every app again, SIGUSR1 reloads as it is.
        signal.signal(signal.SIGHUP, lambda *_: daemon.hup())
        signal.signal(signal.SIGUSR1, lambda *_: daemon.usr1())

    _run_daemon("lb", LB_FLAGS, args, LbDaemon, started=signals)


@main.group(cls=_DaemonOrGroup, invoke_without_command=True,
            context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.pass_context
def agent(ctx: click.Context) -> None:
    """Run an agent (meseta agent --help), or `meseta agent list`."""
    if "daemon_args" in ctx.meta:
        from meseta.agent.daemon import AGENT_FLAGS, AgentDaemon
        # As a Mesos agent: SIGTERM/SIGINT stop the agent and leave its tasks running,
        # checkpointed, for the next start to take back; SIGUSR1 shuts down and kills them.
        _run_daemon("agent", AGENT_FLAGS, ctx.meta["daemon_args"], AgentDaemon,
                    stop=lambda daemon, sig: daemon.stop(kill_tasks=sig == signal.SIGUSR1),
                    signals=(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1))


@main.group(cls=_DaemonOrGroup, invoke_without_command=True,
            context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.pass_context
def dns(ctx: click.Context) -> None:
    """Run Mesos-DNS (meseta dns --help), or `meseta dns lookup <name>`."""
    if "daemon_args" in ctx.meta:
        _run_dns(ctx.meta["daemon_args"])


def _run_dns(argv: Sequence[str]) -> None:
    from meseta.dns import daemon as dns_daemon
    from meseta.dns.config import ConfigError as DnsConfigError
    if any(arg in ("--help", "-h") for arg in argv):
        click.echo(dns_daemon.__doc__)
        return
    if any(arg.lstrip("-") == "version" for arg in argv):
        click.echo(dns_daemon.VERSION)
        return
    try:
        config, options = dns_daemon.load(argv)
    except DnsConfigError as exc:
        raise click.UsageError(str(exc)) from None
    setup_logging(options.log_level, options.log_format)
    daemon = dns_daemon.DnsDaemon(config, options)
    try:
        daemon.start()
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"dns failed to start: {exc}") from None
    _wait_for_signal()
    daemon.stop()


@dns.command("lookup")
@click.argument("name")
@click.option("--type", "qtype", default="A", show_default=True, help="A, AAAA, SRV, SOA, NS, ANY.")
@click.option("--server", default="127.0.0.1:53", show_default=True, help="ip:port of the DNS server.")
@click.option("--tcp", is_flag=True, help="Ask over TCP instead of UDP.")
@click.option("--timeout", default=3.0, show_default=True)
def dns_lookup(name: str, qtype: str, server: str, tcp: bool, timeout: float) -> None:
    """Ask a DNS server (meseta dns, or any) and print the answers, one per line."""
    import socket

    from dnslib import QTYPE, RCODE, DNSRecord

    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        host, port = server, "53"
    try:
        query = DNSRecord.question(name, qtype.upper())
        reply = DNSRecord.parse(query.send(host.strip("[]"), int(port), tcp=tcp, timeout=timeout))
    except (socket.timeout, OSError) as exc:
        raise click.ClickException(f"no answer from {server}: {exc}") from None
    except Exception as exc:     # dnslib raises plain errors for an unknown type or bad reply
        raise click.ClickException(f"cannot ask {server} for {name} {qtype}: {exc}") from None
    for rr in reply.rr:
        click.echo(f"{rr.rname}\t{rr.ttl}\t{QTYPE[rr.rtype]}\t{rr.rdata}")
    if reply.header.rcode != RCODE.NOERROR or not reply.rr:
        click.echo(f";; {RCODE[reply.header.rcode]}, {len(reply.rr)} answers", err=True)
        if reply.header.rcode != RCODE.NOERROR:
            sys.exit(1)


@main.command()
@click.option("--agents", default=1, show_default=True, help="Local agents to start.")
@click.option("--ip", default="127.0.0.1", show_default=True)
@click.option("--port", default=5050, show_default=True, help="Master HTTP port; agents use the next ports.")
@click.option("--work_dir", "--work-dir", default="", help="Where state and sandboxes live (default: a temp dir).")
@click.option("--resources", default="", help="Resources of each agent, in Mesos syntax.")
@click.option("--marathon/--no-marathon", default=True, show_default=True,
              help="Also run Marathon (REST API on the master port + 3030, 8080 by default).")
@click.option("--dns/--no-dns", default=True, show_default=True,
              help="Also run Mesos-DNS (DNS on the master port + 48, HTTP API on 8123).")
@click.option("--lb/--no-lb", default=True, show_default=True,
              help="Also run the HAProxy load balancer when haproxy is installed (API on the master "
                   "port + 4039, stats page on + 4040).")
@click.option("--log_level", "--log-level", default="info", show_default=True)
def up(agents: int, ip: str, port: int, work_dir: str, resources: str, marathon: bool,
       dns: bool, lb: bool, log_level: str) -> None:
    """The embedded single-node cluster: a standalone master, local agents, Marathon and DNS."""
    from meseta.embedded import Cluster, ClusterSpec
    setup_logging(log_level, "auto")
    cluster = Cluster(ClusterSpec(agents=agents, ip=ip, port=port, work_dir=work_dir,
                                  resources=resources, marathon=marathon, dns=dns, lb=lb))
    try:
        cluster.start()
    except OSError as exc:
        raise click.ClickException(f"cannot start the cluster: {exc}") from None
    click.echo(cluster.describe())
    click.echo("Press Ctrl-C to stop.")
    _wait_for_signal()
    click.echo("stopping...")
    cluster.stop()


from meseta import client  # noqa: E402  (registers the client commands on the groups above)

client.register(main, agent)

if __name__ == "__main__":
    sys.exit(main())
