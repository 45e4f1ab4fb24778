"""`meshctl capture-validate`: the ``istio-validation`` init container's check (Istio's
``istio-iptables --run-validation --skip-rule-apply``).

With CNI, the plugin programs the pod's iptables before any container starts; this check, run
as the proxy's user inside the pod, proves the rules are there. It listens on the inbound
capture port (15006) on 127.0.0.1 and connects to ``127.0.0.6:<probe port 15002>``, where nothing
listens: only the capture rule for the proxy's own loopback traffic (``! -d 127.0.0.1 -o lo
--uid-owner 1337 -> ISTIO_IN_REDIRECT``) can bring that connection to the listener, which reads
its original destination (``SO_ORIGINAL_DST``) and echoes it. Anything else (refused, a wrong
destination, silence) exits **126**, Istio's validation failure code, so the pod does not start
uncaptured and the CNI agent's repair can find it.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import threading
import time

from meshplane.ctl.errors import EXIT_USAGE, error

EXIT_NOT_CAPTURED = 126
PROBE_ADDRESS = "127.0.0.6"
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def _original_destination(conn: socket.socket) -> str:
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, address = struct.unpack_from("!2xH4s", raw)
    return f"{socket.inet_ntoa(address)}:{port}"


def _serve(listener: socket.socket, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        with conn:
            try:
                conn.sendall(_original_destination(conn).encode())
            except OSError:
                conn.sendall(b"?")


def _probe(probe_port: int, timeout: float) -> str:
    """What the listener saw as the probe's destination; raises OSError when it was not reached."""
    with socket.create_connection((PROBE_ADDRESS, probe_port), timeout=timeout) as conn:
        return conn.recv(64).decode(errors="replace")


def validate(inbound_port: int, probe_port: int, timeout: float) -> str | None:
    """None when redirection works; otherwise why not."""
    expected = f"{PROBE_ADDRESS}:{probe_port}"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", inbound_port))
    except OSError as exc:
        listener.close()
        return f"cannot listen on the inbound capture port 127.0.0.1:{inbound_port}: {exc.strerror}"
    listener.listen(8)
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(listener, stop), daemon=True)
    server.start()
    deadline = time.monotonic() + timeout
    problem = "no attempt made"
    try:
        while True:
            try:
                seen = _probe(probe_port, max(0.2, deadline - time.monotonic()))
                if seen == expected:
                    return None
                problem = f"the capture listener saw destination {seen!r}, expected {expected}"
            except OSError as exc:
                problem = f"connecting to {expected}: {exc.strerror or exc}"
            if time.monotonic() >= deadline:
                return f"traffic is not redirected to the proxy ({problem}); is the CNI plugin installed?"
            time.sleep(0.2)
    finally:
        stop.set()
        server.join()
        listener.close()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("capture-validate", help="check that the pod's traffic is redirected to the proxy")
    p.add_argument("-p", "--envoy-port", type=int, default=15001, help="outbound capture port")
    p.add_argument("-z", "--inbound-capture-port", type=int, default=15006, help="inbound capture port")
    p.add_argument("-u", "--proxy-uid", type=int, default=1337, help="the proxy's user; the check runs as it")
    p.add_argument("--probe-port", type=int, default=15002, help="Istio's --iptables-probe-port")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to keep trying")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("envoy_port", "inbound_capture_port", "probe_port"):
        if not 0 < getattr(args, name) < 65536:
            error("capture-validate", f"--{name.replace('_', '-')}: expected 1..65535")
            return EXIT_USAGE
    if os.getuid() != args.proxy_uid:
        error("capture-validate", f"must run as the proxy's uid {args.proxy_uid}, runs as {os.getuid()}")
        return EXIT_USAGE
    problem = validate(args.inbound_capture_port, args.probe_port, args.timeout)
    if problem is not None:
        error("capture-validate", problem)
        return EXIT_NOT_CAPTURED
    print(
        f"traffic to {PROBE_ADDRESS}:{args.probe_port} is redirected to the proxy's port "
        f"{args.inbound_capture_port}"
    )
    return 0


if __name__ == "__main__":  # ``python -m meshplane.ctl.capture ARGS``: the check alone (stdlib only)
    import sys

    parser = argparse.ArgumentParser(prog="meshctl")
    add_parser(parser.add_subparsers())
    parsed = parser.parse_args(["capture-validate", *sys.argv[1:]])
    sys.exit(parsed.func(parsed))
