"""The project's import rules, checked on the source (ast, no imports run).

Every import counts: at the top, inside a function, and under TYPE_CHECKING. The allowed
directions are written down once, here, and drawn in docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.paths import REPO

PACKAGES = ("agent", "training", "profiles")
HEAVY = ("torch", "lightning", "mlflow", "airflow", "onnx", "statsforecast")   # never under agent/

# agent/: what each package may import besides itself and the shared modules (agent.config, agent.units,
# agent/__init__). "root" is the composition root and command line (main.py, cli.py, malloc_tune.py).
PURE = {"state", "features", "forecast", "policy", "anomaly"}
HOST_IO = {"collect", "actuate", "sessions", "bus", "models", "observe"}
AGENT_ALLOWED = {
    "state": set(),
    "features": {"state"},
    "forecast": {"features", "state"},
    "policy": {"forecast", "state"},
    "anomaly": {"forecast", "state"},
    "collect": {"state"},
    "actuate": {"collect", "policy"},
    "sessions": {"actuate", "collect", "policy", "state"},
    "bus": {"sessions", "policy", "forecast", "state"},
    "models": {"bus", "policy"},     # profile classes: verified with the fleet key, parsed by policy/seed.py
    "observe": set(),
    "loop": PURE | HOST_IO,
    "root": PURE | HOST_IO | {"loop"},
    "demo": PURE | HOST_IO | {"loop", "root"},
}
# Outside agent/ only the demo may reach, and only for trace readers and the ingest it runs.
AGENT_OUTSIDE = {"demo": {"training.data", "profiles"}}

# training/: its packages, and which agent packages each may use (the pure ones, config, and the bus
# for publishing a promoted model).
TRAINING_ALLOWED = {
    "data": set(),
    "forecaster": {"data"},
    "evaluation": {"data", "forecaster"},
    "anomaly": set(),
    "pipeline": {"data", "forecaster", "evaluation"},
    "root": {"data", "forecaster", "evaluation", "anomaly", "pipeline"},
}
TRAINING_AGENT = PURE | {"shared", "bus"}


def project_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name `path` imports (module, or module.attribute for `from m import a`)."""
    out = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(project module -> project modules it imports, project module -> outside top-level names)."""
    mods = project_modules()
    inner, outer = {}, {}
    for name, path in mods.items():
        deps, outside = set(), set()
        for dotted in imported_names(name, path):
            m = dotted
            while m and m not in mods:
                m = m.rpartition(".")[0]
            if m:
                if m != name:
                    deps.add(m)
            else:
                outside.add(dotted.split(".")[0])
        inner[name], outer[name] = deps, outside
    return inner, outer


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def area(module: str) -> tuple[str, str]:
    """("agent" | "training" | "profiles", its package there: a subpackage, "root" or "shared")."""
    top, _, rest = module.partition(".")
    sub = rest.split(".")[0]
    if top == "profiles":
        return top, "profiles"
    if not sub or (top == "agent" and sub in ("config", "units")):
        return top, "shared"
    if (REPO / top / sub).is_dir():
        return top, sub
    return top, "root"


def rule_breaks(graph: dict[str, set[str]]) -> list[str]:
    breaks = []
    for mod, deps in graph.items():
        top, pkg = area(mod)
        for dep in deps:
            dtop, dpkg = area(dep)
            if (dtop, dpkg) == (top, pkg) or dpkg == "shared" and dtop == top:
                continue
            if top == "agent":
                ok = (dtop == "agent" and dpkg in AGENT_ALLOWED[pkg] if pkg != "shared" else dpkg == "shared")
                if dtop != "agent":
                    ok = any(dep == o or dep.startswith(o + ".") for o in AGENT_OUTSIDE.get(pkg, ()))
            elif top == "training":
                if dtop == "training":
                    ok = pkg != "shared" and dpkg in TRAINING_ALLOWED[pkg]
                else:
                    ok = dtop == "agent" and dpkg in TRAINING_AGENT
            else:   # profiles: the ingest reads the agent's protocol, limits and sample types
                ok = dtop == "agent" and dpkg in {"bus", "policy", "state", "shared"}
            if not ok:
                breaks.append(f"{mod} -> {dep}")
    return sorted(breaks)


def test_no_module_imports_itself_back_through_others():
    inner, _ = import_graph()
    assert cycles(inner) == []


def test_the_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_nothing_under_agent_imports_a_training_framework():
    _, outer = import_graph()
    heavy = {mod: sorted(set(names) & set(HEAVY)) for mod, names in outer.items() if mod.startswith("agent")}
    assert {mod: names for mod, names in heavy.items() if names} == {}


def test_pure_packages_import_no_host_io():
    inner, _ = import_graph()
    bad = [f"{m} -> {d}" for m, deps in inner.items() for d in deps
           if area(m) in {("agent", p) for p in PURE} and area(d)[0] == "agent"
           and area(d)[1] in HOST_IO | {"loop", "root", "demo"}]
    assert bad == []


def test_every_import_follows_the_allowed_directions():
    inner, _ = import_graph()
    assert rule_breaks(inner) == []


def test_the_direction_check_catches_a_planted_break():
    planted = {"agent.policy.decide": {"agent.sessions.store"}, "agent.forecast.base": {"agent.loop.agent_loop"},
               "training.data.series": {"training.pipeline.steps"}, "agent.loop.sync": {"agent.policy.limits"}}
    assert rule_breaks(planted) == ["agent.forecast.base -> agent.loop.agent_loop",
                                    "agent.policy.decide -> agent.sessions.store",
                                    "training.data.series -> training.pipeline.steps"]


def test_every_package_says_what_it_owns_and_may_import():
    missing = []
    for pkg in PACKAGES:
        for init in (REPO / pkg).rglob("__init__.py"):
            doc = ast.get_docstring(ast.parse(init.read_text())) or ""
            if init.parent != REPO / pkg and "May import" not in doc:
                missing.append(str(init.relative_to(REPO)))
    assert missing == []
