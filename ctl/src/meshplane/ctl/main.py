"""meshctl: the istioctl-shaped command line for meshplane."""

from __future__ import annotations

import argparse
import sys

from meshplane.ctl import __version__, up


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshctl", description="Command line for the meshplane control plane.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="print the client version")
    up.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"meshctl {__version__}")
        return 0
    if args.command == "up":
        return up.run(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
