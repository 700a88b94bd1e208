"""Every docstring example in the library runs (under the suite's float64 settings)."""

import doctest
import importlib
import pkgutil

import pytest

import jaxmm


def _modules():
    names = ["jaxmm"]
    for info in pkgutil.walk_packages(jaxmm.__path__, prefix="jaxmm."):
        if info.name.endswith("__main__") or info.name == "jaxmm.demo":
            continue
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} failing example(s) in {name}"
