"""Shared helpers of the exporters: atomic text writes, identifier checks, netlist preparation."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_text", "check_identifier", "prepared"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def atomic_write_text(path: Any, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def check_identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"{what} = {name!r} is not a valid C/Verilog identifier, expected e.g. 'lgn_net'")
    return name


def prepared(netlist: Any, simplify: bool):
    """Validate ``netlist`` and return it, simplified when asked."""
    from ..netlist.ir import Netlist

    if not isinstance(netlist, Netlist):
        raise ValueError(f"netlist is a {type(netlist).__name__}, expected an lgn_nas Netlist")
    netlist.validate()
    if simplify:
        result = netlist.simplify()
        netlist = result[0] if isinstance(result, tuple) else result
    return netlist
