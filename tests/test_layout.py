"""The package's shape: no import cycles, no import from a later pipeline stage into an earlier
one, and no source file past the size a reader can hold in mind."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gpt2"
MAX_LINES = 250
# Pipeline stages, earliest first: text -> ids -> shards -> model -> checkpoint -> text.
# A module may import from its own stage or an earlier one, never a later one.
STAGES = {
    "errors": 0, "files": 0, "config": 0, "hardware": 0, "lazy": 0,
    "device": 1, "device_options": 1, "layer_norm": 1, "attention": 1, "mlp": 1, "transformer_block": 1,
    "hf_layout": 1,
    "checkpoint": 1, "gpt_model": 1, "loss": 1, "autotune": 1, "autotune_probe": 1, "runtime": 1,
    "tokenizers": 2, "chat_template": 2, "data": 3, "generation": 4, "evaluation": 4, "training": 5,
    "finetune": 5, "commands": 6, "serving": 6,
    "cli": 7, "__main__": 7,
}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every gpt2 module `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gpt2"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gpt2"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.get(parts[1]) if len(parts) > 1 else None  # the package itself re-exports


def test_every_module_has_a_stage():
    assert [m for m in _modules() if m != "gpt2" and _stage(m) is None] == []


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_import_from_a_later_stage():
    late = [(a, b) for a, deps in _graph().items() for b in deps
            if _stage(a) is not None and _stage(b) is not None and _stage(b) > _stage(a)]
    assert late == []


def test_no_source_file_is_too_long():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
