"""The runnable examples of docs/book.md and of the book/execution docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "book.md"
MODULES = [
    "jaxmm.book._book",
    "jaxmm.book._chain",
    "jaxmm.book._instrument",
    "jaxmm.book._symbols",
    "jaxmm.book._types",
    "jaxmm.execution._inprocess",
    "jaxmm.execution._latency",
    "jaxmm.execution._orders",
    "jaxmm.execution._quotes",
]


def test_docs_book_md_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 3
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0
    assert res.attempted > 0
