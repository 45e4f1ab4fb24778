"""meshctl's verb table: lazy loading keeps every verb's help, and a verb imports only its module."""

from __future__ import annotations

import argparse

import pytest

from meshplane.ctl.main import VERBS, build_parser
from meshplane.shared.testing.imports import imported_after


def _choices(parser: argparse.ArgumentParser) -> dict[str, str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {c.dest: c.help or "" for c in sub._choices_actions}


def test_the_placeholders_match_the_real_parsers() -> None:
    """Names, aliases and help lines in VERBS are what each module registers."""
    real = build_parser([], load_all=True)
    lazy = build_parser([])
    assert _choices(lazy) == _choices(real)
    real_sub = next(a for a in real._actions if isinstance(a, argparse._SubParsersAction))
    assert set(real_sub.choices) == {n for v in VERBS for n in (v.name, *v.aliases)}


@pytest.mark.parametrize(
    ("argv", "absent"),
    [
        (["--help"], ["meshplane.shared.bus", "meshplane.shared.config", "cryptography", "nats"]),
        (["bootstrap", "--help"], ["meshplane.shared.bus", "meshplane.shared.analysis", "nats"]),
        (["version", "--help"], ["meshplane.shared.analysis", "meshplane.ctl.localmesh.mesh"]),
    ],
)
def test_a_verb_imports_only_what_it_needs(argv: list[str], absent: list[str]) -> None:
    code = (
        "import sys; from meshplane.ctl.main import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass"
    )
    assert imported_after(code, absent, argv) == []


def test_no_verb_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from meshplane.ctl.main import main

    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(v.name in out for v in VERBS)
