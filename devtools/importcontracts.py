"""An import-linter contract type: the given packages import only the standard library and an allow-list.

The CNI plugin is the executable the container runtime calls for every pod: it must start fast and
never fail for want of a third-party package, so it may import only the standard library and its
own rules (``[tool.importlinter]`` in ``pyproject.toml``).
"""

from __future__ import annotations

import sys

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class StdlibOnlyContract(Contract):
    source_modules = fields.ListField(subfield=fields.ModuleField())
    allowed_modules = fields.ListField(subfield=fields.ModuleField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = [m.name for m in self.allowed_modules]  # type: ignore[attr-defined]
        broken: list[tuple[str, str, list[int]]] = []
        for source in self.source_modules:  # type: ignore[attr-defined]
            for importer in sorted({source.name, *graph.find_descendants(source.name)}):
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    if _allowed(imported, allowed):
                        continue
                    details = graph.get_import_details(importer=importer, imported=imported)
                    broken.append((importer, imported, [d["line_number"] for d in details]))
        return ContractCheck(kept=not broken, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported, lines in check.metadata["broken"]:
            where = ", ".join(f"l.{n}" for n in lines)
            output.print_error(
                f"{importer} imports {imported} ({where}): only the standard library", bold=False
            )
        output.new_line()


def _allowed(module: str, allowed: list[str]) -> bool:
    if module.split(".")[0] in sys.stdlib_module_names:
        return True
    return any(module == a or module.startswith(a + ".") for a in allowed)
