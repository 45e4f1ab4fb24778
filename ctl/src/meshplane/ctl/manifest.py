"""``meshctl manifest generate``: print the Kubernetes objects ``meshctl install`` would apply.

Flags as istioctl's: ``-f/--filename`` (an IstioOperator file, repeatable), ``-s/--set path=value``
(repeatable), ``-r/--revision``, ``-d/--manifests`` (the k8s directory with its profiles). Output
is YAML on stdout; warnings (fields accepted but not applied) go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from meshplane.ctl.errors import EXIT_OK, EXIT_USAGE, error


def add_install_inputs(parser: argparse.ArgumentParser) -> None:
    """The flags every install verb shares."""
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        metavar="FILE",
        help="IstioOperator file (repeatable; later files win)",
    )
    parser.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        dest="sets",
        help="override one field, e.g. components.pilot.k8s.replicaCount=3 (repeatable)",
    )
    parser.add_argument("-r", "--revision", help="control plane revision (a DNS label)")
    parser.add_argument(
        "-d",
        "--manifests",
        type=Path,
        help="meshplane's k8s directory (default: the one shipped with meshctl)",
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    manifest = sub.add_parser("manifest", help="print the Kubernetes objects of an install")
    verbs = manifest.add_subparsers(dest="manifest_command", metavar="COMMAND", required=True)
    generate = verbs.add_parser("generate", help="print the objects meshctl install would apply, as YAML")
    add_install_inputs(generate)
    generate.set_defaults(func=run_generate)


def render_inputs(args: argparse.Namespace, verb: str) -> tuple[Path, Any, Any] | None:
    """The manifests directory, the merged install resource and its rendering; warnings printed.
    None (the error printed) when an input is bad."""
    from meshplane.ctl.install.load import default_manifests, load_operator
    from meshplane.ctl.install.render import render
    from meshplane.ctl.install.spec import InstallError

    try:
        manifests = args.manifests or default_manifests()
        op = load_operator(manifests, args.filename, args.sets, args.revision)
        rendered = render(manifests, op)
    except InstallError as exc:
        error(verb, str(exc))
        return None
    for warning in rendered.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return manifests, op, rendered


def run_generate(args: argparse.Namespace) -> int:
    inputs = render_inputs(args, "manifest generate")
    if inputs is None:
        return EXIT_USAGE
    sys.stdout.write(yaml.safe_dump_all(inputs[2].objects, sort_keys=False))
    return EXIT_OK
