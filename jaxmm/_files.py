"""Reading a configuration table from a ``.toml`` or ``.json`` file (the command line's
``--config`` files and the API's settings file share it)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any


def read_table(path: str | Path) -> dict[str, Any]:
    """The top-level table of a ``.toml`` or ``.json`` file.

    Raises ``ValueError`` naming the path and saying what is wrong: unreadable, not
    valid TOML/JSON, another suffix, or not a table/object at the top level.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.toml"
        >>> _ = p.write_text('seed = 3\\n[api]\\nport = 8000\\n')
        >>> read_table(p)
        {'seed': 3, 'api': {'port': 8000}}
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror})") from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid TOML ({exc})") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
    else:
        raise ValueError(f"{path}: suffix must be .toml or .json, got {path.suffix!r}")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a table/object at the top level")
    return data
