"""meshctl: the istioctl-shaped command line for meshplane.

Each subcommand lives in its own module with ``add_parser(sub)``, which registers the parser
and sets ``func`` (``args.func(args) -> exit code``). Add a command by listing it in ``VERBS``.

Modules are imported only for the verb being run: ``meshctl --help`` and a verb's own run never
pay for the others' imports (the bus client, the config models, cryptography). The other verbs
get a placeholder parser carrying only their help line, which a test keeps equal to the real one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple

from meshplane.ctl.errors import EXIT_USAGE, error


class Verb(NamedTuple):
    name: str
    module: str
    help: str
    aliases: tuple[str, ...] = ()


VERBS = [
    Verb("up", "meshplane.ctl.up", "run the whole mesh locally until Ctrl-C"),
    Verb("validate", "meshplane.ctl.validate", "validate Istio configuration files"),
    Verb(
        "analyze",
        "meshplane.ctl.analyze",
        "analyze Istio and Kubernetes config offline and report IST codes",
    ),
    Verb("kube-inject", "meshplane.ctl.inject", "add the sidecar to Kubernetes workload YAML"),
    Verb("proxy-status", "meshplane.ctl.status", "sync state of every proxy on every Pilot", ("ps",)),
    Verb("version", "meshplane.ctl.status", "client version and every running component's (via the bus)"),
    Verb(
        "proxy-config",
        "meshplane.ctl.proxyconfig",
        "show an Envoy's clusters, listeners, routes, ...",
        ("pc",),
    ),
    Verb("bootstrap", "meshplane.ctl.bootstrap", "write an Envoy bootstrap for a sidecar or gateway"),
    Verb(
        "workload-probe",
        "meshplane.ctl.workloadprobe",
        "run a VM's WorkloadGroup probe and report its health to Pilot",
    ),
    Verb(
        "capture-validate",
        "meshplane.ctl.capture",
        "check that the pod's traffic is redirected to the proxy",
    ),
    Verb(
        "wait",
        "meshplane.ctl.proxylifecycle",
        "wait until the proxy is ready (holdApplicationUntilProxyStarts)",
    ),
    Verb(
        "drain",
        "meshplane.ctl.proxylifecycle",
        "drain the proxy's inbound listeners, then wait (terminationDrainDuration)",
    ),
    Verb("token", "meshplane.ctl.token", "print a workload token signed by a local Citadel's issuer"),
    Verb(
        "cacerts", "meshplane.ctl.cacerts", "make a shared root and a plugged-in intermediate CA per cluster"
    ),
    Verb(
        "create-remote-secret",
        "meshplane.ctl.remotesecret",
        "print the credentials another cluster's bus uses to join this one's",
    ),
    Verb("install", "meshplane.ctl.installcmd", "install meshplane into a cluster"),
    Verb("upgrade", "meshplane.ctl.installcmd", "upgrade an install in place"),
    Verb("uninstall", "meshplane.ctl.installcmd", "remove what meshctl install made"),
    Verb("manifest", "meshplane.ctl.manifest", "print the Kubernetes objects of an install"),
    Verb("tag", "meshplane.ctl.tag", "manage revision tags (set, generate, list, remove)"),
    Verb(
        "bus-credentials",
        "meshplane.ctl.buscredentials",
        "make the bus's CA, server certificate and component keys",
    ),
]


def _chosen(argv: list[str]) -> Verb | None:
    word = next((a for a in argv if not a.startswith("-")), None)
    return next((v for v in VERBS if word == v.name or word in v.aliases), None)


def build_parser(argv: list[str], load_all: bool = False) -> argparse.ArgumentParser:
    """The parser; only the verb named in ``argv`` (or every verb, with ``load_all``) is imported."""
    parser = argparse.ArgumentParser(
        prog="meshctl", description="Command line for the meshplane control plane."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(argv)
    loaded: set[str] = set()
    for verb in VERBS:
        if load_all or (chosen is not None and verb.module == chosen.module):
            if verb.module not in loaded:
                importlib.import_module(verb.module).add_parser(sub)
                loaded.add(verb.module)
        else:
            sub.add_parser(verb.name, aliases=list(verb.aliases), help=verb.help, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    verb = _chosen(argv)
    try:
        code: int = func(args)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. an output file that cannot be written
        error(verb.name if verb else "", str(exc))
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
