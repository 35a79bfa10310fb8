"""The Python examples in the README and docs run as written."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/model.md", "docs/scoring.md"]


def blocks(name):
    return re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(), re.S)


@pytest.mark.parametrize("name", DOCS)
def test_python_examples_run(name, tmp_path, monkeypatch):
    found = blocks(name)
    assert found, f"{name} has no python example"
    monkeypatch.chdir(tmp_path)
    for code in found:
        exec(compile(code, f"{name}:example", "exec"), {"__name__": "__doc_example__"})
