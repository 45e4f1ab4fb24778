"""`meshctl analyze`: run the config analyzers offline over a directory or files, like ``istioctl analyze``.

Prints one line per message (``Error [IST0101] (VirtualService default/reviews a.yaml:1) ...``)
or JSON with ``-o json``. Exits 79 (istioctl's code) when a message at or above
``--failure-threshold`` (default Error) is found, 1 when an input cannot be read, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from meshplane.shared.analysis import ERROR, INFO, LEVEL_RANK, WARNING, analyze
from meshplane.shared.config import load_path

EXIT_ISSUES = 79
SUFFIXES = (".yaml", ".yml", ".json")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analyze", help="analyze Istio config offline and report IST codes")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dir", type=Path, help="analyze every YAML/JSON file under this directory")
    src.add_argument("-f", "--filename", dest="files", type=Path, nargs="+", help="analyze these files")
    p.add_argument("-o", "--output", choices=("log", "json"), default="log", help="output format")
    p.add_argument(
        "--failure-threshold",
        choices=(INFO, WARNING, ERROR),
        default=ERROR,
        help="exit non-zero when a message at this level or above is found (default Error)",
    )
    p.set_defaults(func=run)


def _inputs(args: argparse.Namespace) -> tuple[list[Path], Path | None]:
    if args.dir is not None:
        root: Path = args.dir
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and p.suffix.lower() in SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        return files, root
    return list(args.files), None


def run(args: argparse.Namespace) -> int:
    if args.dir is not None and not args.dir.is_dir():
        print(f"Error: --dir {args.dir}: not a directory", file=sys.stderr)
        return 1
    files, root = _inputs(args)
    items: list[tuple[dict[str, Any], str]] = []
    load_failed = False
    for path in files:
        shown = path.relative_to(root).as_posix() if root else str(path)
        if not path.is_file():
            print(f"Error: {shown}: no such file", file=sys.stderr)
            load_failed = True
            continue
        for doc in load_path(path):
            if doc.error:
                print(f"Error: {doc.error}", file=sys.stderr)
                load_failed = True
            elif doc.obj is not None:
                items.append((doc.obj, f"{shown}:{doc.line}"))
    result = analyze(items)
    if args.output == "log":
        for msg in result.messages:
            print(msg)
        if not result.messages:
            where = str(root) if root else ", ".join(str(f) for f in files)
            print(f"\u2714 No validation issues found when analyzing {where}.")
    else:
        print(json.dumps([m.to_dict() for m in result.messages], indent=2))
    if any(LEVEL_RANK[m.level] >= LEVEL_RANK[args.failure_threshold] for m in result.messages):
        return EXIT_ISSUES
    return 1 if load_failed else 0
