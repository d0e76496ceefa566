"""The package's shape: no import cycles, no import from a later pipeline stage into an earlier
one, and no source file past the size a reader can hold in mind: a cap on the concepts a file
offers (its public classes and functions), and a generous line cap behind it. (A tight line
cap alone made code dense: pairs of unrelated values assigned on one line to fit.)"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gpt2"
MAX_LINES = 320  # a backstop; the concept cap is the rule
MAX_CONCEPTS = 14  # public top-level classes and functions of one module
# Pipeline stages, earliest first: text -> ids -> shards -> model -> checkpoint -> text.
# A module may import from its own stage or an earlier one, never a later one. The model core
# (stage 1) is below the machine (stage 2, gpt2.runtime): the model takes concrete dtypes and
# kernels, and never learns what `auto` means on the hardware at hand.
STAGES = {
    "errors": 0, "files": 0, "config": 0, "lazy": 0, "signals": 0, "limits": 0, "text_input": 0,
    "layer_norm": 1, "attention": 1, "mlp": 1, "transformer_block": 1, "gpt_model": 1, "loss": 1,
    "hf_layout": 1, "checkpoint": 1,
    "runtime": 2,
    "tokenizers": 3, "chat_template": 3, "data": 4, "generation": 5, "evaluation": 5, "training": 6,
    "finetune": 6,
    "commands": 7, "serving": 7,
    "cli": 8, "__main__": 8,
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


def test_the_model_core_imports_nothing_of_the_machine():
    """The model files never import gpt2.runtime (the autotuner, the probe, device options)."""
    core = {m for m in _modules() if _stage(m) == 1}
    assert {m for m in core if any(dep.startswith("gpt2.runtime") for dep in _graph()[m])} == set()
    assert "gpt2.gpt_model" in core and "gpt2.runtime.autotune" in _modules()


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


def test_no_source_file_offers_too_many_concepts():
    many = {}
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        public = [n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))
                  and not n.name.startswith("_")]
        if len(public) > MAX_CONCEPTS:
            many[name] = public
    assert many == {}


def test_no_source_file_is_too_long():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
