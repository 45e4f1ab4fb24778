"""meshctl: the istioctl-shaped command line for meshplane.

Each subcommand lives in its own module with ``add_parser(sub)``, which registers the parser
and sets ``func`` (``args.func(args) -> exit code``). Add a command by listing its module here.
"""

from __future__ import annotations

import argparse
import sys

from meshplane.ctl import analyze, bootstrap, inject, proxyconfig, status, token, up, validate

COMMANDS = [up, validate, analyze, inject, status, proxyconfig, bootstrap, token]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshctl", description="Command line for the meshplane control plane."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
