"""Hardware and portable-code export of discrete netlists: C99 (:func:`to_c`) and Verilog-2001
(:func:`to_verilog`, :func:`write_testbench`, :func:`synthesize`). Every exported circuit agrees bit for
bit with ``Netlist.evaluate_bits``."""
from .c import c_source, to_c
from .verilog import synthesize, to_verilog, verilog_source, write_testbench

__all__ = ["to_c", "c_source", "to_verilog", "verilog_source", "write_testbench", "synthesize"]
