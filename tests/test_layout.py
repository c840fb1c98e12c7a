"""The house by stage: every module's place in the code fingerprint is declared, and imports run one way, down the
data flow (spec -> runner -> store -> analysis -> figures and claims -> report), with no circles and nothing
running back up. Imports inside functions count: a lazy import is still an arrow."""
import ast
from pathlib import Path

from replicate import paths

ROOT = Path(paths.PACKAGE).parent

# Lowest first; a module may import its own layer or any layer below. The first matching prefix places a module.
LAYERS = [
    ("utilities", ["replicate.errors", "replicate.paths", "replicate.registry", "replicate.seeds",
                   "replicate.allocator", "replicate.__init__"]),
    ("evaluators", ["evaluators"]),
    ("algorithms and tasks", ["replicate.algorithms", "replicate.tasks"]),
    ("rollout engines", ["replicate.engines"]),
    ("run config", ["replicate.config"]),
    ("store", ["replicate.store"]),
    ("runners", ["replicate.runners"]),
    ("analysis", ["replicate.analysis"]),
    ("figures, claims, results", ["replicate.report"]),
    ("spec loading and docs", ["replicate.specs"]),
    ("orchestration", ["replicate.experiment", "replicate.backends", "replicate.benchmarks"]),
    ("report of every spec, tools", ["replicate.summary", "replicate.bench"]),
    ("command line", ["replicate.cli", "replicate.__main__"]),
]


def modules() -> dict[str, Path]:
    out = {}
    for top in ("replicate", "evaluators"):
        for f in sorted((ROOT / top).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__" and len(parts) > 1 and parts != ["replicate", "__init__"]:
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def layer(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py; place it there")


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports (resolved to the longest known module name)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph():
    mods = modules()
    return {m: imports(m, f, set(mods)) for m, f in mods.items()}


def test_every_module_is_declared_in_or_out_of_the_code_fingerprint():
    for name, root in paths.SOURCE_ROOTS.items():
        for f in root.rglob("*.py"):
            top = f.relative_to(root).parts[0]
            counted, left_out = top in paths.FINGERPRINTED[name], top in paths.NOT_FINGERPRINTED[name]
            assert counted != left_out, f"{name}/{top}: declare it in exactly one of paths.FINGERPRINTED / NOT_FINGERPRINTED"


def test_the_fingerprint_hashes_training_code_and_not_presentation():
    files = {rel for rel, _ in paths.fingerprinted_files()}
    assert {"runners/rl/trainer.py", "algorithms/advantages.py", "tasks/base.py", "store.py", "code.py"} <= files
    assert not {f for f in files if f.startswith(("report/", "analysis/", "bench/", "specs/", "lmeval/"))}


def test_imports_run_down_the_layers():
    up = [f"{m} ({LAYERS[layer(m)][0]}) imports {d} ({LAYERS[layer(d)][0]})"
          for m, deps in graph().items() for d in deps if layer(d) > layer(m)]
    assert not up, "imports running back up:\n" + "\n".join(sorted(up))


def test_evaluators_import_nothing_of_replicate():
    assert not [(m, d) for m, deps in graph().items() if m.startswith("evaluators") for d in deps
                if d.startswith("replicate")]


def test_no_import_circles():
    g = graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == "open" and not _is_parent(d, m):
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"
    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _is_parent(package: str, module: str) -> bool:
    """A module importing names its own package re-exports is not a circle of modules (the package __init__
    names what it holds)."""
    return module.startswith(package + ".")
