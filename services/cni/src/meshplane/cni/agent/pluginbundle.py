"""The plugin file the agent installs on the node: a shell preamble followed by a zip of the
plugin's Python modules, run by the node's own ``python3``.

The runtime (kubelet's containerd/CRI-O) executes the plugin on the host, where the agent
container's interpreter and virtualenv do not exist. The plugin needs only the standard library,
so the file carries its own modules (``meshplane.cni.plugin``, ``.rules``, ``.netns``) and the
preamble finds a ``python3`` on the host and runs the file itself as a zip application
(Python ignores the data before the zip). Without a usable Python the plugin answers with the
CNI error JSON naming what is missing, so the pod event says why, instead of "no such file".
Bytecode for the agent's Python version is included (unchecked-hash ``.pyc`` beside each
source, as zipimport looks for it); other versions compile the sources.
"""

from __future__ import annotations

import importlib.util
import io
import marshal
import zipfile
from pathlib import Path

#: The oldest Python the plugin's modules are written for (stdlib only, nothing newer used).
MIN_PYTHON = (3, 9)
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _error(message: str) -> str:
    return '{"cniVersion":"1.0.0","code":999,"msg":"meshplane-cni: %s"}' % message  # noqa: UP031


def preamble() -> str:
    """The shell part: exec the first python3 found on this file, or print a CNI error.

    The usual absolute paths come first: a ``python3`` on the runtime's PATH may be a wrapper
    (pyenv shims are shell scripts) that costs more than the plugin itself.
    """
    need = ".".join(map(str, MIN_PYTHON))
    missing = _error(f"no python3 on this node (the plugin needs Python {need} or newer on the host)")
    return (
        "#!/bin/sh\n"
        "# meshplane-cni, installed by meshplane-cni-agent: this preamble, then a zip of the plugin.\n"
        "for py in /usr/bin/python3 /usr/local/bin/python3 /usr/libexec/platform-python python3; do\n"
        '  command -v "$py" >/dev/null 2>&1 && exec "$py" -S -I "$0" "$@"\n'
        "done\n"
        f"echo '{missing}'\n"
        "exit 1\n"
    )


def _main_source() -> str:
    need = ".".join(map(str, MIN_PYTHON))
    too_old = _error(f"the node's python3 is older than {need}")
    return (
        '"""Entry point of the installed plugin (kept valid for any Python 3)."""\n'
        "import sys\n\n"
        f"if sys.version_info < {MIN_PYTHON!r}:\n"
        f"    sys.stdout.write({too_old!r} + '\\n')\n"
        "    sys.exit(1)\n"
        "from meshplane.cni.plugin.main import main\n\n"
        "sys.exit(main())\n"
    )


def _modules() -> list[tuple[str, bytes]]:
    """(path in the archive, source) of every module the plugin imports."""
    from meshplane.cni.plugin import main as plugin_main

    package = Path(plugin_main.__file__).resolve().parents[1]  # .../meshplane/cni
    root = package.parents[1]
    files = [*sorted((package / "plugin").glob("*.py")), *sorted((package / "rules").glob("*.py"))]
    files.append(package / "netns.py")
    return [(f.relative_to(root).as_posix(), f.read_bytes()) for f in files]


def _pyc(source: bytes, name: str) -> bytes:
    """Unchecked-hash bytecode (PEP 552) for this interpreter: valid inside a zip, no mtimes."""
    code = compile(source, name, "exec", dont_inherit=True)
    flags = (1).to_bytes(4, "little")
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)


def _entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, _ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED  # no inflating on each pod start
    archive.writestr(info, data)


def plugin_file() -> bytes:
    """The whole installed file: preamble, then the zip (offsets relative to the zip's start)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        _entry(archive, "__main__.py", _main_source().encode())
        modules = _modules()
        # directory entries: zipimport finds namespace packages (meshplane, meshplane.cni) by them
        dirs = {
            "/".join(name.split("/")[:i]) + "/" for name, _ in modules for i in range(1, name.count("/") + 1)
        }
        for directory in sorted(dirs):
            archive.writestr(zipfile.ZipInfo(directory, _ZIP_TIME), b"")
        for name, source in modules:
            _entry(archive, name, source)
            _entry(archive, name[: -len(".py")] + ".pyc", _pyc(source, name))
    return preamble().encode() + buf.getvalue()
