"""Capture settings → ``iptables-restore`` text, and ``iptables-save`` text → our rules (pure).

Chains and order follow Istio's ``istio-iptables``: ``ISTIO_INBOUND`` → ``ISTIO_IN_REDIRECT``
(15006) for inbound, ``ISTIO_OUTPUT`` → ``ISTIO_REDIRECT`` (15001) for outbound, the proxy's
UID/GID 1337 and the 127.0.0.6 passthrough source excluded; TPROXY mode moves inbound capture to
the mangle table (``ISTIO_DIVERT``/``ISTIO_TPROXY``).  Rules are written in the exact form
``iptables-save`` prints them, so what we apply can be compared line by line with what is there.

Restores use ``--noflush``: declaring a chain flushes only that chain, jumps from the built-in
chains are deleted before being re-added, so applying twice gives the same rules and every other
rule in the netns stays untouched.
"""

from __future__ import annotations

from meshplane.cni.rules.settings import ALL, HBONE_PORT, CaptureSettings

IPV4 = 4
IPV6 = 6
TABLES = ("nat", "mangle")
CHAINS = {
    "nat": ("ISTIO_INBOUND", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT", "ISTIO_REDIRECT"),
    "mangle": ("ISTIO_INBOUND", "ISTIO_DIVERT", "ISTIO_TPROXY"),
}
BUILTIN = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
OUR_PREFIX = "ISTIO_"


class TableState:
    """Our part of one table as ``iptables-save`` shows it."""

    __slots__ = ("chains", "jumps", "rules")

    def __init__(self, chains: list[str] | None = None) -> None:
        self.chains: list[str] = chains or []
        self.rules: list[str] = []
        self.jumps: list[str] = []


def _family_cidrs(cidrs: tuple[str, ...], family: int) -> list[str]:
    return [c for c in cidrs if c != ALL and (":" in c) == (family == IPV6)]


def _dport(port: int | str) -> str:
    return f"-p tcp -m tcp --dport {port}"


def _inbound(settings: CaptureSettings) -> list[str]:
    """Rules of ISTIO_INBOUND (nat in REDIRECT mode, mangle in TPROXY mode)."""
    target = "ISTIO_TPROXY" if settings.mode == "TPROXY" else "ISTIO_IN_REDIRECT"
    rules = [f"-A ISTIO_INBOUND -i {name} -j RETURN" for name in settings.exclude_interfaces]
    rules.append(f"-A ISTIO_INBOUND {_dport(HBONE_PORT)} -j RETURN")
    established = "-m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT"
    tproxy = settings.mode == "TPROXY"
    if settings.include_inbound_ports == (ALL,):
        rules += [f"-A ISTIO_INBOUND {_dport(p)} -j RETURN" for p in settings.exclude_inbound_ports]
        if tproxy:  # packets of connections already diverted keep going to the proxy's socket
            rules.append(f"-A ISTIO_INBOUND -p tcp {established}")
        rules.append(f"-A ISTIO_INBOUND -p tcp -j {target}")
    else:
        for port in settings.include_inbound_ports:
            if tproxy:
                rules.append(f"-A ISTIO_INBOUND {_dport(port)} {established}")
            rules.append(f"-A ISTIO_INBOUND {_dport(port)} -j {target}")
    return rules


def _tproxy(settings: CaptureSettings, family: int) -> list[str]:
    mark = f"{settings.tproxy_mark:#x}/0xffffffff"
    local = "::1/128" if family == IPV6 else "127.0.0.1/32"
    any_ip = "::" if family == IPV6 else "0.0.0.0"
    return [
        f"-A ISTIO_DIVERT -j MARK --set-xmark {mark}",
        "-A ISTIO_DIVERT -j ACCEPT",
        f"-A ISTIO_TPROXY ! -d {local} -p tcp -j TPROXY --on-port {settings.inbound_port}"
        f" --on-ip {any_ip} --tproxy-mark {mark}",
    ]


def _output(settings: CaptureSettings, family: int) -> list[str]:
    passthrough = "::6/128" if family == IPV6 else "127.0.0.6/32"
    local = "::1/128" if family == IPV6 else "127.0.0.1/32"
    rules = [f"-A ISTIO_OUTPUT -o {name} -j RETURN" for name in settings.exclude_interfaces]
    rules += [f"-A ISTIO_OUTPUT {_dport(p)} -j RETURN" for p in settings.exclude_outbound_ports]
    rules.append(f"-A ISTIO_OUTPUT -s {passthrough} -o lo -j RETURN")
    for kind, owner in (("uid", settings.proxy_uid), ("gid", settings.proxy_gid)):
        rules += [
            f"-A ISTIO_OUTPUT ! -d {local} -o lo -m owner --{kind}-owner {owner} -j ISTIO_IN_REDIRECT",
            f"-A ISTIO_OUTPUT -o lo -m owner ! --{kind}-owner {owner} -j RETURN",
            f"-A ISTIO_OUTPUT -m owner --{kind}-owner {owner} -j RETURN",
        ]
    rules.append(f"-A ISTIO_OUTPUT -d {local} -j RETURN")
    rules += [
        f"-A ISTIO_OUTPUT -d {cidr} -j RETURN"
        for cidr in _family_cidrs(settings.exclude_outbound_cidrs, family)
    ]
    rules += [f"-A ISTIO_OUTPUT {_dport(p)} -j ISTIO_REDIRECT" for p in settings.include_outbound_ports]
    if settings.include_outbound_cidrs == (ALL,):
        rules.append("-A ISTIO_OUTPUT -j ISTIO_REDIRECT")
    else:
        rules += [
            f"-A ISTIO_OUTPUT -d {cidr} -j ISTIO_REDIRECT"
            for cidr in _family_cidrs(settings.include_outbound_cidrs, family)
        ]
        rules.append("-A ISTIO_OUTPUT -j RETURN")
    return rules


def expected_rules(settings: CaptureSettings, family: int = IPV4) -> dict[str, TableState]:
    """Our chains, rules and built-in-chain jumps per table, as ``iptables-save`` prints them."""
    nat = TableState(chains=["ISTIO_IN_REDIRECT", "ISTIO_OUTPUT", "ISTIO_REDIRECT"])
    nat.jumps = ["-A OUTPUT -p tcp -j ISTIO_OUTPUT"]
    mangle = TableState()
    if settings.mode == "TPROXY":
        mangle.chains = ["ISTIO_INBOUND", "ISTIO_DIVERT", "ISTIO_TPROXY"]
        mangle.jumps = ["-A PREROUTING -p tcp -j ISTIO_INBOUND"]
        mangle.rules = _inbound(settings) + _tproxy(settings, family)
    else:
        nat.chains.insert(0, "ISTIO_INBOUND")
        nat.jumps.insert(0, "-A PREROUTING -p tcp -j ISTIO_INBOUND")
        nat.rules = _inbound(settings)
    nat.rules += [f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {settings.inbound_port}"]
    nat.rules += _output(settings, family)
    nat.rules += [f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {settings.proxy_port}"]
    for state in (nat, mangle):  # iptables-save lists user chains by name; keep order within each
        state.chains.sort()
        state.rules.sort(key=lambda rule: rule.split()[1])
    return {"nat": nat, "mangle": mangle}


def render(state: dict[str, TableState]) -> str:
    """Our part of the tables as text: ``*table``, ``:CHAIN`` lines, jumps, rules (golden form)."""
    out: list[str] = []
    for table in TABLES:
        part = state.get(table, TableState())
        if part.chains or part.jumps or part.rules:
            out += [f"*{table}", *(f":{c}" for c in sorted(part.chains)), *part.jumps, *part.rules]
    return "\n".join(out) + "\n"


def parse_save(text: str) -> dict[str, TableState]:
    """Pick our chains, rules and jumps out of ``iptables-save`` output, per table."""
    found: dict[str, TableState] = {table: TableState() for table in TABLES}
    state: TableState | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            state = found.get(line[1:].strip())
        elif state is None or not line.strip() or line.startswith("#"):
            continue
        elif line.startswith(":" + OUR_PREFIX):
            state.chains.append(line[1:].split()[0])
        elif line.startswith("-A " + OUR_PREFIX):
            state.rules.append(line.rstrip())
        elif f" -j {OUR_PREFIX}" in line and line.split()[1] in BUILTIN:
            state.jumps.append(line.rstrip())
    return found


def _delete_jump(line: str) -> str:
    return "-D" + line[2:]


def restore_add(settings: CaptureSettings, current: dict[str, TableState], family: int = IPV4) -> str:
    """``iptables-restore --noflush`` input that makes the netns hold exactly our rules."""
    wanted = expected_rules(settings, family)
    out: list[str] = []
    for table in TABLES:
        want, have = wanted[table], current.get(table, TableState())
        stale = [c for c in have.chains if c not in want.chains]
        if not want.chains and not have.chains and not have.jumps:
            continue
        out.append(f"*{table}")
        out += [f":{chain} - [0:0]" for chain in want.chains + stale]
        out += [_delete_jump(line) for line in have.jumps]
        out += [f"-X {chain}" for chain in stale]
        out += want.jumps + want.rules
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def restore_delete(current: dict[str, TableState]) -> str:
    """``iptables-restore --noflush`` input removing our chains and jumps, and nothing else."""
    out: list[str] = []
    for table in TABLES:
        have = current.get(table, TableState())
        if not have.chains and not have.jumps:
            continue
        out.append(f"*{table}")
        out += [f":{chain} - [0:0]" for chain in have.chains]
        out += [_delete_jump(line) for line in have.jumps]
        out += [f"-X {chain}" for chain in have.chains]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def by_chain(rules: list[str]) -> dict[str, list[str]]:
    """Rules grouped per chain, keeping their order inside each chain."""
    grouped: dict[str, list[str]] = {}
    for rule in rules:
        grouped.setdefault(rule.split()[1], []).append(rule)
    return grouped


def differences(settings: CaptureSettings, current: dict[str, TableState], family: int = IPV4) -> list[str]:
    """What differs between the rules we expect and the ones in the netns (empty: all in place)."""
    wanted = expected_rules(settings, family)
    problems: list[str] = []
    for table in TABLES:
        want, have = wanted[table], current.get(table, TableState())
        for kind, expected, actual in (
            ("chains", sorted(want.chains), sorted(have.chains)),
            ("jumps", want.jumps, have.jumps),
            ("rules", want.rules, have.rules),
        ):
            if expected == actual or (kind == "rules" and by_chain(expected) == by_chain(actual)):
                continue
            missing = [x for x in expected if x not in actual]
            extra = [x for x in actual if x not in expected]
            detail = f"missing {missing}" if missing else ""
            detail += f"{'; ' if detail else ''}unexpected {extra}" if extra else ""
            problems.append(f"{table} {kind}: {detail or 'out of order'}")
    return problems
