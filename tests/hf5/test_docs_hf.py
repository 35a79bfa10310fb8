"""The Python examples of docs/huggingface.md run as written (they need transformers 5)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_huggingface_doc_examples_run(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "huggingface.md").read_text()
    found = re.findall(r"```python\n(.*?)```", text, re.S)
    assert found
    monkeypatch.chdir(tmp_path)
    for code in found:
        exec(compile(code, "docs/huggingface.md:example", "exec"), {"__name__": "__doc__"})
    assert (tmp_path / "tiny-saved" / "model.safetensors").is_file()
