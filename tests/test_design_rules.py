"""DESIGN.md's rules over the whole package, read from the source: no pickle for any file read or
written, and the flow top to bottom (a lower package never imports a higher one)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "convscope"

UNPICKLERS = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}

# DESIGN.md's table: what each package may import (errors.py is everyone's; zoo.py is nn's).
MAY_IMPORT = {
    "backend": {"backend", "errors"},
    "ops": {"ops", "backend", "errors"},
    "nn": {"nn", "zoo", "ops", "backend", "errors"},
    "zoo": {"nn", "zoo", "ops", "backend", "errors"},
    "data": {"data", "backend", "errors"},
    "train": {"train", "nn", "zoo", "data", "ops", "backend", "errors"},
    "debug": {"debug", "train", "nn", "zoo", "data", "ops", "backend", "errors"},
}


def pickle_uses(source: str) -> list[str]:
    """Each import of a pickling module, ``allow_pickle=True`` and ``torch.load`` call, by line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in UNPICKLERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLERS:
            found.append(f"{node.lineno}: from {node.module} import …")
        elif isinstance(node, ast.Call):
            if any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant)
                                                    and k.value.value is False)
                   for k in node.keywords):
                found.append(f"{node.lineno}: allow_pickle not False")
            if ast.unparse(node.func) == "torch.load":
                found.append(f"{node.lineno}: torch.load")
    return found


def convscope_imports(source: str) -> list[tuple[int, str]]:
    """(line, package) of every ``convscope.<package>`` the source imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = ([f"convscope.{a.name}" for a in node.names] if node.module == "convscope"
                     else [node.module])
        else:
            continue
        found += [(node.lineno, n.split(".")[1]) for n in names if n.startswith("convscope.")]
    return found


def _modules():
    return sorted(SRC.rglob("*.py"))


def test_the_checks_catch_what_they_look_for():
    bad = ("import pickle\nfrom joblib import load\nimport numpy as np\nimport torch\n"
           "np.load('a.npz', allow_pickle=True)\ntorch.load('w.pt')\nnp.load('b.npz', allow_pickle=False)\n")
    assert pickle_uses(bad) == ["1: import pickle", "2: from joblib import …",
                                "5: allow_pickle not False", "6: torch.load"]
    assert convscope_imports("from convscope import nn, ops\nimport convscope.train.run\n") == [
        (1, "nn"), (1, "ops"), (2, "train")]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_file_is_read_or_written_with_pickle(path):
    assert pickle_uses(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", [p for p in _modules() if p.relative_to(SRC).parts[0]
                                  .removesuffix(".py") in MAY_IMPORT],
                         ids=lambda p: str(p.relative_to(SRC)))
def test_a_lower_package_never_imports_a_higher_one(path):
    package = path.relative_to(SRC).parts[0].removesuffix(".py")
    upward = [(line, to) for line, to in convscope_imports(path.read_text(encoding="utf-8"))
              if to not in MAY_IMPORT[package]]
    assert upward == [], f"{package} may import only {sorted(MAY_IMPORT[package])}"
