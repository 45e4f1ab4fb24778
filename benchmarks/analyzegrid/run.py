"""How many of the messages Istio's own analyzer tests expect does ``meshctl analyze`` find?

    .venv/bin/python -m benchmarks.analyzegrid.run ISTIO_CHECKOUT [-v] [--case NAME]

Reads the test grid of ``pkg/config/analysis/analyzers/analyzers_test.go`` in an istio checkout
(see ``grid.py``), and for each case runs ``meshctl analyze -A -o json --analyzer NAME`` on the
case's input files (with its ``--meshConfigFile``/``--meshNetworksFile``), from the test's
directory, as the Go test does (every namespace; the analyzer under test only). Messages are
compared as the Go test compares them: code and resource (``Kind ns/name``), as a multiset.

The Go harness leaves objects without a namespace in namespace "", so it expects ``Service
httpbin``; ``meshctl analyze`` gives such objects the ``-n`` namespace (``default``), as istioctl
does on files, so an expected ``Kind name`` of a namespaced kind matches ``Kind default/name``.

Prints per case and per code found/expected, extra messages (Error-level ones counted apart),
and the totals: over every expected message, and over those of the cases in meshplane's scope
(``OUT_OF_SCOPE`` says which are not, and why). Exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.analyzegrid.grid import ANALYZERS_DIR, Case, read_grid
from meshplane.ctl.main import main as meshctl
from meshplane.shared.analysis.registry import CLUSTER_SCOPED

#: meshplane analyzers that carry codes Istio's analyzer of that name emits (meshplane split them).
ALSO_RUN: dict[str, tuple[str, ...]] = {
    "injection.Analyzer": ("injection.PodAnalyzer",),
    "sidecar.SelectorAnalyzer": ("sidecar.AmbientAnalyzer",),
    "schema.ValidationAnalyzer": ("virtualservice.RuleAnalyzer",),
}

#: Istio analyzers whose cases are outside meshplane's scope, and why.
OUT_OF_SCOPE: dict[str, str] = {
    "annotations.AlphaAnalyzer": "not in Istio's All() either (skipAll): istioctl analyze never runs it",
}


@dataclass
class CaseResult:
    case: Case
    found: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    extra: list[dict[str, str]] = field(default_factory=list)
    failure: str = ""

    @property
    def in_scope(self) -> bool:
        return self.case.analyzer not in OUT_OF_SCOPE


def _matches(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    kind, _, name = expected.partition(" ")
    return "/" not in name and kind not in CLUSTER_SCOPED and actual == f"{kind} default/{name}"


def run_case(case: Case, test_dir: Path) -> CaseResult:
    result = CaseResult(case)
    argv = ["analyze", "-A", "-o", "json", "--analyzer", case.analyzer]
    for extra in ALSO_RUN.get(case.analyzer, ()):
        argv += ["--analyzer", extra]
    if case.mesh_config:
        argv += ["--meshConfigFile", case.mesh_config]
    if case.mesh_networks:
        argv += ["--meshNetworksFile", case.mesh_networks]
    argv += case.inputs
    out, err = io.StringIO(), io.StringIO()
    cwd = Path.cwd()
    try:
        os.chdir(test_dir)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = meshctl(argv)
    finally:
        os.chdir(cwd)
    try:
        messages = json.loads(out.getvalue() or "[]")
    except json.JSONDecodeError:
        messages = []
    if code not in (0, 79) or not isinstance(messages, list):
        result.failure = f"exit {code}: {err.getvalue().strip()[:300]}"
    pending = list(case.expected)
    for msg in messages:
        for exp in pending:
            if exp[0] == msg.get("code") and _matches(exp[1], str(msg.get("origin"))):
                pending.remove(exp)
                result.found.append(exp)
                break
        else:
            result.extra.append(msg)
    result.missing = pending
    return result


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def report(results: list[CaseResult], verbose: bool) -> None:
    per_code: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        for code, _ in r.case.expected:
            per_code[code]["expected"] += 1
        for code, _ in r.found:
            per_code[code]["found"] += 1
        for msg in r.extra:
            per_code[str(msg.get("code"))]["extra"] += 1
    for r in results:
        scope = "" if r.in_scope else f"  [out of scope: {OUT_OF_SCOPE[r.case.analyzer]}]"
        errors = sum(1 for m in r.extra if m.get("level") == "Error")
        print(
            f"#{r.case.index:<3} {r.case.name[:48]:<48} {r.case.analyzer:<48} "
            f"{len(r.found)}/{len(r.case.expected)} extra {len(r.extra)} (Error {errors}){scope}"
        )
        if r.failure:
            print(f"      FAILED {r.failure}")
        if verbose:
            for code, origin in r.missing:
                print(f"      missing {code} {origin}")
            for msg in r.extra:
                where = f"{msg.get('level')} {msg.get('code')} {msg.get('origin')}"
                print(f"      extra   {where}: {msg.get('message')}")
    print("\nper code: found/expected (extra)")
    for code in sorted(per_code):
        c = per_code[code]
        print(f"  {code}  {c['found']:>3}/{c['expected']:<3} ({c['extra']})")
    scoped = [r for r in results if r.in_scope]
    for label, group in (("all cases", results), ("in meshplane's scope", scoped)):
        expected = sum(len(r.case.expected) for r in group)
        found = sum(len(r.found) for r in group)
        errors = sum(1 for r in group for m in r.extra if m.get("level") == "Error")
        print(
            f"{label}: {len(group)} cases, found {found} of {expected} expected messages "
            f"({_pct(found, expected)}); {sum(len(r.extra) for r in group)} extra, {errors} at Error level"
        )
    out = [r for r in results if not r.in_scope]
    print(f"out of scope: {len(out)} cases, {sum(len(r.case.expected) for r in out)} expected messages")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("istio", type=Path, help="path to an istio checkout")
    parser.add_argument("-v", "--verbose", action="store_true", help="list missing and extra messages")
    parser.add_argument("--case", action="append", default=[], help="run only cases with this name")
    args = parser.parse_args(argv)
    try:
        cases = read_grid(args.istio)
    except (OSError, ValueError, KeyError) as exc:
        print(f"analyzegrid: {exc}", file=sys.stderr)
        return 2
    if args.case:
        cases = [c for c in cases if c.name in args.case]
    test_dir = args.istio / ANALYZERS_DIR
    report([run_case(c, test_dir) for c in cases], args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
