"""The README's quick start, executed, so the README cannot rot.

The quick start is every fenced block right after an HTML comment ``<!-- quickstart -->`` in
README.md; a README that loses its markers fails
:func:`test_readme_has_a_quickstart_with_the_two_commands`.

- Shell blocks: each line is a command run from the repository root (a trailing ``# comment``
  and leading ``NAME=value`` assignments are understood). ``make`` runs with its install
  prerequisites marked up to date (``-o``: the suite already runs inside the installed
  environment, so no test installs packages) and with ``PY`` set to this interpreter.
  ``make test`` is checked with ``make -n test`` (the suite cannot run itself from inside).
  ``make demo`` runs for real with short settings (``JAXMM_DEMO_SECONDS=4``, a free port, a
  temporary output folder): while it runs the printed URL and token are used against the live
  API, after it exits its summary is checked against the SQLite fill log
  (:func:`test_demo.check_run`).
- Python blocks run in a fresh interpreter with warnings as errors.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_demo import DemoProcess, check_live_api, check_run, demo_env, free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!--\s*quickstart\s*-->[ \t]*\n```([\w+-]*)[^\n]*\n(.*?)^```", re.S | re.M)
SHELL = {"", "sh", "bash", "shell", "console"}
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def quickstart() -> tuple[Path, list[tuple[str, str]]]:
    """``(README.md, [(language, code), ...])`` of the marked blocks."""
    blocks = BLOCK.findall(README.read_text())
    return README, [(lang.lower(), code) for lang, code in blocks]


SOURCE, BLOCKS = quickstart()


def commands(code: str) -> list[list[str]]:
    """Shell lines as argv lists (prompt ``$ `` and trailing comments removed)."""
    out = []
    for line in code.splitlines():
        line = line.strip().removeprefix("$ ")
        argv = shlex.split(line, comments=True)
        if argv:
            out.append(argv)
    return out


def _make_env(extra: dict[str, str]) -> dict[str, str]:
    env = demo_env(**extra)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # when the suite itself runs under make
        env.pop(k, None)
    return env


def _installed_prerequisites(target: str) -> list[str]:
    """File prerequisites of ``make TARGET`` (the install tickets of the virtual env)."""
    db = subprocess.run(
        ["make", "-pq", target], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout  # fmt: skip
    for line in db.splitlines():
        if line.startswith(f"{target}:") and not line.startswith(f"{target}::"):
            deps = line.split(":", 1)[1].replace("|", " ").split()
            return [d for d in deps if "/" in d]
    return []


def run_make(argv: list[str], assigns: dict[str, str], tmp_path: Path) -> None:
    targets = [a for a in argv[1:] if not a.startswith("-") and not _ASSIGN.match(a)]
    variables = [a for a in argv[1:] if _ASSIGN.match(a)]
    if "test" in targets:
        r = subprocess.run(
            ["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120,
            env=_make_env(assigns),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "pytest" in r.stdout, r.stdout
        return
    old = [f"-o{p}" for t in targets for p in _installed_prerequisites(t)]
    cmd = ["make", *old, f"PY={sys.executable}", *variables, *targets]
    if "demo" not in targets:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env=_make_env(assigns))  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        return
    out = tmp_path / "demo-output"
    env = _make_env(
        {"JAXMM_DEMO_SECONDS": "4", "JAXMM_DEMO_PORT": str(free_port()),
         "JAXMM_DEMO_OUT": str(out), **assigns}
    )  # fmt: skip
    proc = DemoProcess(cmd, env)
    try:
        check_live_api(proc)
        rc = proc.wait(300)
    finally:
        proc.kill()
    assert rc == 0, proc.text
    text = proc.text
    # part 1, the pricing kernels: IV round trip where vega is informative
    err = float(re.search(r"implied vol round trip: max \|error\| (\S+) over", text).group(1))
    assert err < 1e-9
    check_run(text, out, interrupted=False)


def test_readme_has_a_quickstart_with_the_two_commands():
    shell = [c for lang, code in BLOCKS if lang in SHELL for c in commands(code)]
    plain = [" ".join(a for a in c if not _ASSIGN.match(a)) for c in shell]
    assert "make demo" in plain and "make test" in plain, (SOURCE, plain)


@pytest.mark.parametrize(("lang", "code"), BLOCKS, ids=lambda x: x.split("\n")[0][:40])
def test_quickstart_block_runs(lang, code, tmp_path):
    if lang in ("python", "py"):
        r = subprocess.run(
            [sys.executable, "-W", "error", "-c", code], cwd=tmp_path, capture_output=True,
            text=True, timeout=300, env=demo_env(),
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        return
    assert lang in SHELL, f"{SOURCE}: quick-start block in {lang!r}: no way to run it"
    for argv in commands(code):
        assigns = {}
        while argv and _ASSIGN.match(argv[0]):
            k, _, v = argv.pop(0).partition("=")
            assigns[k] = v
        if argv[0] == "make":
            run_make(argv, assigns, tmp_path)
        else:
            r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300,
                               env={**os.environ, **assigns})  # fmt: skip
            assert r.returncode == 0, r.stdout + r.stderr
