"""Shared helpers of the exporters: atomic text writes, identifier checks, netlist preparation."""
from __future__ import annotations

import re
from typing import Any

from ..atomic import atomic_write_text

__all__ = ["atomic_write_text", "check_identifier", "prepared"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
