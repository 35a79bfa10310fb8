"""The shape of the package's imports: ``txl --help`` and ``txl --version`` load no PyTorch, nor
does the framework-neutral ``transformer_xl.run``; the command table in ``cli.py`` matches the
command modules; project imports sit at module top; the module-level import graph has no cycle."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transformer_xl.cli import COMMANDS, build_parser, chosen_command

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "transformer_xl"
# in-function imports allowed: optional dependencies, heavy or not always installed
OPTIONAL = {"tensorflow", "triton", "transformers", "matplotlib", "tokenizers", "lm_eval",
            "huggingface_hub", "onnx", "onnxruntime", "x_transformers", "loguru"}  # fmt: skip

LOADED = """
import sys
from transformer_xl.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy"))))
print(",".join(sorted(m for m in sys.modules if m.startswith("transformer_xl."))))
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], [], ["no-such-command"]])
def test_help_and_version_load_no_torch(argv):
    out = subprocess.run(
        [sys.executable, "-c", LOADED.format(argv=argv)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    heavy, ours = out.stdout.splitlines()[-2:]
    assert heavy == "", heavy
    assert ours == "transformer_xl.cli", ours


def test_only_the_chosen_command_is_imported():
    argv = ["plot", "--help"]
    out = subprocess.run(
        [sys.executable, "-c", LOADED.format(argv=argv)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    ours = out.stdout.splitlines()[-1].split(",")
    commands = [m for m in ours if m.startswith("transformer_xl.commands.")]
    assert commands == ["transformer_xl.commands.plot"], commands
    assert chosen_command(["--version", "eval", "--json"]) == "eval"
    assert chosen_command(["-h"]) is None


def _subparsers(parser):
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")


def test_the_table_lists_every_command_module_once():
    modules = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__", "common"}
    assert sorted(c.module for c in COMMANDS.values()) == sorted(modules)
    full, bare = _subparsers(build_parser()), _subparsers(build_parser(full=()))
    assert list(full.choices) == list(bare.choices) == list(COMMANDS)
    # the help lines of `txl --help` come from the table whether or not a module was imported
    assert [a.help for a in full._choices_actions] == [c.help for c in COMMANDS.values()]
    assert [a.help for a in bare._choices_actions] == [c.help for c in COMMANDS.values()]
    assert build_parser().format_help() == build_parser(full=()).format_help()


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _top_level_imports(tree: ast.Module, package: str):
    """Names imported when the module runs (``if TYPE_CHECKING:`` blocks excluded)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If):
            guard = ast.unparse(node.test)
            stack.extend(
                node.orelse if guard.endswith("TYPE_CHECKING") else node.body + node.orelse
            )
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody)
            stack.extend(s for h in node.handlers for s in h.body)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def _module_graph() -> dict[str, set[str]]:
    """Module -> the project modules it runs at import time."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for imported in _top_level_imports(ast.parse(path.read_text()), package):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            parent = imported
            while parent:  # importing a.b.c runs a.b (not an ancestor of the importer itself)
                if parent in modules and parent != name and not name.startswith(parent + "."):
                    targets.add(parent)
                parent = parent.rpartition(".")[0]
        graph[name] = targets
    return graph


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same imports between the package's parts: each subpackage (``train``, ``run``,
    ``model``, ...) and each top-level module is one node; the root ``transformer_xl`` is
    left out (its names load lazily)."""

    def part(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else None

    out: dict[str, set[str]] = {}
    for name, targets in graph.items():
        src = part(name)
        if src is None:
            continue
        out.setdefault(src, set())
        out[src] |= {t for t in map(part, targets) if t is not None and t != src}
    return out


def _first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt, [*path, nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_no_import_cycle_at_module_level():
    cycle = _first_cycle(_module_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_between_packages():
    """``train/`` may use ``evaluate.py`` or the other way round, not both."""
    cycle = _first_cycle(_package_graph(_module_graph()))
    assert cycle is None, "package import cycle: " + " -> ".join(cycle)


def test_the_cycle_checks_see_a_cycle():
    modules = {"transformer_xl.a.x": {"transformer_xl.b"}, "transformer_xl.b": {"transformer_xl.a.y"},
               "transformer_xl.a.y": set()}  # fmt: skip
    assert _first_cycle(modules) is None
    assert _first_cycle(_package_graph(modules)) == ["a", "b", "a"]


LEFT = {  # (file, imported module): why the import stays inside a function
    ("commands/eval.py", "transformer_xl.tf.evaluate"): "imports tensorflow",
    ("commands/train.py", "transformer_xl.tf.train"): "imports tensorflow",
    ("commands/lm_eval.py", "transformer_xl.hf.harness"): "imports lm_eval",
    ("model/kernels/registry.py", "transformer_xl.model.kernels.triton_attn"): "imports triton",
    ("model/kernels/flex.py", "torch.nn.attention.flex_attention"): "compiles on first use",
    ("schema/parse.py", "tomllib"): "Python 3.11+ only (else tomli)",
    ("schema/parse.py", "tomli"): "the TOML reader before Python 3.11",
    ("schema/parse.py", "yaml"): "optional: only for YAML run configs",
    ("train/data.py", "pydoc_data.topics"): "the embedded default corpus; some Pythons lack it",
    ("train/distributed.py", "torch.distributed.fsdp"): "only with FSDP (not every build has it)",
    ("train/loop.py", "torch.distributed.checkpoint.state_dict"): "only for sharded checkpoints",
}


def test_project_imports_sit_at_module_top():
    inside = []
    for path in sorted(PACKAGE.rglob("*.py")):  # the whole package
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    names = [a.name for a in sub.names]
                elif isinstance(sub, ast.ImportFrom):
                    names = ["." if sub.level else (sub.module or "")]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] not in OPTIONAL and (rel, name) not in LEFT:
                        inside.append(f"{rel}:{sub.lineno} {name}")
    assert inside == []


def test_the_run_layer_loads_neither_framework():
    code = (
        "import importlib, pkgutil, sys\n"
        "import transformer_xl.run as run\n"
        "for m in pkgutil.iter_modules(run.__path__):\n"
        "    importlib.import_module('transformer_xl.run.' + m.name)\n"
        "print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    assert out.stdout.splitlines()[-1] == "[]"


def test_a_closed_pipe_ends_quietly():
    """``txl presets | head -1``: no error line, no traceback when the reader goes away."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "transformer_xl.cli", "presets"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    proc.stdout.close()  # the reader goes away before the output is written
    err = proc.stderr.read().decode()
    assert proc.wait() == 141
    assert err == ""
