"""The Python code blocks of docs/python.md run as written (each in a fresh namespace)."""

import os
import re

import pytest

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "python.md")


def blocks():
    with open(DOC) as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("i", range(len(blocks())))
def test_python_md_block_runs(i, recwarn):
    code = blocks()[i]
    exec(compile(code, f"docs/python.md block {i}", "exec"), {"__name__": f"doc_block_{i}"})
