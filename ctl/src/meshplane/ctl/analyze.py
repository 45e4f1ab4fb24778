"""`meshctl analyze`: run the config analyzers offline over files and directories, like ``istioctl analyze``.

Inputs: paths (files, directories walked recursively, ``-`` for stdin; ``.yaml``, ``.yml`` and
``.json``), Kubernetes kinds as well as Istio kinds, multi-document YAML and ``kind: List``;
MeshConfig from ``--meshConfigFile`` (else from an ``istio`` ConfigMap among the inputs) and
MeshNetworks from ``--meshNetworksFile``.

Prints one line per message (``Error [IST0101] (VirtualService default/reviews a.yaml:1) ...``),
or a list with ``-o json|yaml``. Exit codes: 79 when a message at or above
``--failure-threshold`` exists (``-o log`` only) and 65 when an input could not be parsed
(unless ``--ignore-unknown``), both as istioctl; 2 for bad flags or a path that cannot be read,
as every meshctl verb (istioctl says 64 and 1); else 0.
Live mode: without paths (or with ``--use-kube``) the cluster of the kubeconfig is read too
(``analyzelive``), as istioctl does, without the synthetic ingress gateway; ``-n`` defaults to the
context's namespace, and a namespace that does not exist is reported and exits 0. ``--galley
HOST:PORT`` shows instead what the running mesh's Galley found (its ``/debug/analyze``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshplane.ctl import analyzelive
from meshplane.ctl.errors import EXIT_USAGE, error
from meshplane.shared.analysis import ERROR, INFO, LEVEL_RANK, WARNING, Message, analyze
from meshplane.shared.analysis.registry import ALL
from meshplane.shared.analysis.runner import Options, Suppression
from meshplane.shared.config import load_path, load_text
from meshplane.shared.meshconfig import DEFAULT_ROOT_NAMESPACE, is_config_dir_mesh_file

EXIT_ISSUES = 79
EXIT_DATA_ERROR = 65
SUFFIXES = (".yaml", ".yml", ".json")
LEVELS = {level.lower(): level for level in (INFO, WARNING, ERROR)}
FORMATS = ("log", "json", "yaml")


class UsageError(ValueError):
    """A flag value istioctl would reject (exit 2)."""


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analyze", help="analyze Istio and Kubernetes config offline and report IST codes")
    p.add_argument("paths", nargs="*", help="files or directories to analyze ('-' reads stdin)")
    p.add_argument("--dir", type=Path, help="analyze every YAML/JSON file under this directory")
    p.add_argument(
        "-f", "--filename", dest="files", type=Path, nargs="+", default=[], help="analyze these files"
    )
    p.add_argument(
        "-k", "--use-kube", type=_bool, nargs="?", const=True, default=None, help="read a live cluster"
    )
    p.add_argument("-A", "--all-namespaces", action="store_true", help="analyze every namespace")
    p.add_argument(
        "-n", "--namespace", help="namespace to analyze (default: the kube context's namespace, else default)"
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument(
        "--galley",
        metavar="HOST:PORT",
        help="show what a running Galley found (its /debug/analyze on Galley's --debug-addr)",
    )
    p.add_argument("-i", "--istioNamespace", default=DEFAULT_ROOT_NAMESPACE, help="control-plane namespace")
    p.add_argument("--meshConfigFile", type=Path, help="MeshConfig YAML replacing the default mesh config")
    p.add_argument("--meshNetworksFile", type=Path, help="MeshNetworks YAML")
    p.add_argument(
        "-S",
        "--suppress",
        action="append",
        default=[],
        help='suppress messages: "CODE=Kind ns/name" (globs allowed)',
    )
    p.add_argument("--output-threshold", default=INFO, help="hide messages below this level (default Info)")
    p.add_argument("--failure-threshold", default=ERROR, help="fail at this level or above (default Error)")
    p.add_argument("-o", "--output", default="log", help="output format: log, json or yaml")
    p.add_argument("-L", "--list-analyzers", action="store_true", help="list the analyzers and exit")
    p.add_argument("--analyzer", action="append", default=[], help="run only this analyzer (repeatable)")
    p.add_argument("--ignore-unknown", action="store_true", help="do not fail on files that cannot be parsed")
    p.set_defaults(func=run)


@dataclass
class Inputs:
    items: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    parse_errors: int = 0
    #: a directory's ``mesh.yaml``: its MeshConfig unless ``--meshConfigFile`` is given
    mesh_file: Path | None = None


def _walk(root: Path, inputs: Inputs) -> list[Path]:
    """The config files under ``root``; its ``mesh.yaml`` goes to ``inputs.mesh_file`` instead."""
    found = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or p.suffix.lower() not in SUFFIXES or any(x.startswith(".") for x in rel.parts):
            continue
        if is_config_dir_mesh_file(rel):
            inputs.mesh_file = inputs.mesh_file or p
        else:
            found.append(p)
    return found


def _add(inputs: Inputs, docs: list[Any], shown: str) -> None:
    failed = False
    for doc in docs:
        if doc.error:
            error("analyze", doc.error)
            failed = True
        elif doc.obj is not None:
            inputs.items.append((doc.obj, f"{shown}:{doc.line}"))
    inputs.parse_errors += failed
    inputs.shown.append(shown)


def _gather(args: argparse.Namespace) -> Inputs:
    """Read every input; raises OSError naming a path that cannot be read."""
    inputs = Inputs()
    if args.dir is not None:
        if not args.dir.is_dir():
            raise OSError(f"--dir {args.dir}: not a directory")
        for path in _walk(args.dir, inputs):
            _add(inputs, load_path(path), path.relative_to(args.dir).as_posix())
    for raw in [*args.paths, *map(str, args.files)]:
        if raw == "-":
            _add(inputs, load_text(sys.stdin.read(), "<stdin>"), "<stdin>")
            continue
        path = Path(raw)
        if path.is_dir():
            for found in _walk(path, inputs):
                _add(inputs, load_path(found), found.as_posix())
        elif not path.is_file():
            raise OSError(f"{raw}: no such file")
        elif path.suffix.lower() not in SUFFIXES:
            print(f"Skipping file {raw}, recognized file extensions are: [.json .yaml .yml]", file=sys.stderr)
        else:
            _add(inputs, load_path(path), raw)
    return inputs


def _read_mapping(path: Path, flag: str) -> dict[str, Any]:
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise OSError(f"{flag} {path}: {exc}") from exc
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OSError(f"{flag} {path}: expected a YAML mapping, got {type(value).__name__}")
    return value


def _from_configmap(
    items: list[tuple[dict[str, Any], str]], istio_ns: str, key: str
) -> dict[str, Any] | None:
    """MeshConfig (``mesh``) or MeshNetworks (``meshNetworks``) from the inputs' ``istio`` ConfigMap."""
    for obj, _ in items:
        md = obj.get("metadata")
        if obj.get("kind") != "ConfigMap" or not isinstance(md, Mapping):
            continue
        if md.get("name") != "istio" or md.get("namespace") != istio_ns:
            continue
        data = obj.get("data")
        text = data.get(key) if isinstance(data, Mapping) else None
        if isinstance(text, str):
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _level(text: str, flag: str) -> str:
    level = LEVELS.get(text.lower())
    if level is None:
        raise UsageError(f"{flag} {text!r}: expected Info, Warning or Error")
    return level


def _list_analyzers() -> int:
    print("Available analyzers:")
    for a in sorted(ALL, key=lambda a: a.name):
        print(f"* {a.name}:\n    {a.description}")
    return 0


def _options(args: argparse.Namespace, inputs: Inputs, live: bool) -> Options:
    mesh = _read_mapping(args.meshConfigFile, "--meshConfigFile") if args.meshConfigFile else None
    if mesh is None and inputs.mesh_file is not None:
        mesh = _read_mapping(inputs.mesh_file, "MeshConfig")
    if mesh is None:
        mesh = _from_configmap(inputs.items, args.istioNamespace, "mesh") or {}
    mesh.setdefault("rootNamespace", args.istioNamespace)
    networks = _read_mapping(args.meshNetworksFile, "--meshNetworksFile") if args.meshNetworksFile else None
    if networks is None:
        networks = _from_configmap(inputs.items, args.istioNamespace, "meshNetworks")
    try:
        suppress = tuple(Suppression.parse(s) for s in args.suppress)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return Options(
        mesh_config=mesh,
        mesh_networks=networks,
        namespace=None if args.all_namespaces else args.namespace,
        default_namespace=args.namespace,
        suppress=suppress,
        add_defaults=not live,
        analyzers=tuple(args.analyzer),
    )


def _print(messages: list[Message], fmt: str) -> None:
    if fmt == "log":
        for msg in messages:
            print(msg)
    elif fmt == "json":
        print(json.dumps([msg.to_istioctl() for msg in messages], indent=2))
    else:
        print(yaml.safe_dump([msg.to_istioctl() for msg in messages], sort_keys=False), end="")


def _target(args: argparse.Namespace, inputs: Inputs) -> str:
    if inputs.shown:
        return "\n".join(inputs.shown) if args.dir is None else str(args.dir)
    return "all namespaces" if args.all_namespaces else f"namespace: {args.namespace}"


def _live(args: argparse.Namespace) -> bool:
    """Whether the cluster is read: ``--use-kube``, or no paths unless ``--use-kube=false``."""
    if args.use_kube is not None:
        return bool(args.use_kube)
    return not (args.paths or args.files or args.dir)


def _galley(args: argparse.Namespace) -> list[Message]:
    """Galley's messages, filtered as istioctl filters its own (namespace, ``--suppress``)."""
    try:
        suppress = tuple(Suppression.parse(s) for s in args.suppress)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    namespace = None if args.all_namespaces else (args.namespace or "default")
    kept = []
    for msg in analyzelive.galley_messages(args.galley):
        ns, sep, _ = msg.resource.partition(" ")[2].rpartition("/")
        if namespace is not None and sep and ns != namespace:
            continue
        if not any(s.hides(msg) for s in suppress):
            kept.append(msg)
    return kept


def _gather_live(args: argparse.Namespace, inputs: Inputs) -> bool:
    """Add the cluster's objects to ``inputs``; False when the namespace asked for does not exist."""
    cluster = analyzelive.connect(args.kubeconfig, args.context)
    try:
        inputs.items = analyzelive.read_cluster(cluster) + inputs.items
    finally:
        cluster.close()
    args.namespace = args.namespace or cluster.namespace
    if not args.all_namespaces and not analyzelive.namespace_exists(inputs.items, args.namespace):
        print(f'namespace "{args.namespace}" not found')
        return False
    return True


def run(args: argparse.Namespace) -> int:
    if args.list_analyzers:
        return _list_analyzers()
    live = _live(args)
    try:
        output_threshold = _level(args.output_threshold, "--output-threshold")
        failure_threshold = _level(args.failure_threshold, "--failure-threshold")
        if args.output not in FORMATS:
            raise UsageError(f"--output {args.output!r}: expected one of {', '.join(FORMATS)}")
        if not (args.paths or args.files or args.dir or live or args.galley):
            raise UsageError(
                "nothing to analyze: give files or directories, or read the cluster (--use-kube)"
            )
    except UsageError as exc:
        error("analyze", str(exc))
        return EXIT_USAGE
    inputs = Inputs()
    try:
        if args.galley:
            messages = _galley(args)
        else:
            inputs = _gather(args)
            if live and not _gather_live(args, inputs):
                return 0
            args.namespace = args.namespace or "default"
            messages = analyze(inputs.items, _options(args, inputs, live)).messages
    except (UsageError, OSError, analyzelive.LiveError) as exc:
        error("analyze", str(exc))
        return EXIT_USAGE
    shown = [m for m in messages if LEVEL_RANK[m.level] >= LEVEL_RANK[output_threshold]]
    _print(shown, args.output)
    if not shown and args.output == "log":
        extra = ""
        if inputs.parse_errors:
            files = "files" if inputs.parse_errors > 1 else "file"
            extra = f" (but {inputs.parse_errors} {files} could not be parsed)"
        print(
            f"\u2714 No validation issues found when analyzing {_target(args, inputs)}{extra}.",
            file=sys.stderr,
        )
    if args.output != "log":
        return 0  # istioctl: findings change the exit code only for -o log
    if any(LEVEL_RANK[m.level] >= LEVEL_RANK[failure_threshold] for m in messages):
        return EXIT_ISSUES
    return EXIT_DATA_ERROR if inputs.parse_errors and not args.ignore_unknown else 0
