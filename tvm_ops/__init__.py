"""TVM kernels and lowerings for logic gate networks.

Takes arrays (a netlist's plain-array view, ``lgn_nas.netlist.Netlist.arrays()``, whose format lgn_nas
checks) and returns arrays or compiled modules; imports nothing of timm, Optuna or ``lgn_nas``
(dependencies point ``lgn_nas -> tvm_ops``; ``tests/test_repository.py`` checks it). Importing this package is
cheap: ``import tvm`` (seconds) happens on the first compile or load.

Netlist inference (bit-sliced, 64 samples per uint64 word, SIMD over words, LLVM for this CPU):

- :func:`compile_netlist` -> :class:`CompiledNetlist` (call on raw inputs for float32 scores,
  ``.counts`` for int64 counts, ``.save(path)``); :func:`load_compiled_netlist`.
- :func:`compile_netlist_native` -> :class:`NativeNetlist`: the same contract without TVM, as
  net-specialised AVX-512 or AVX2 code (gates fused into 3-input ops, single-reader values in
  registers) built at run time by the system C compiler; x86-64 with AVX-512 or AVX2
  (:func:`native_available`, :func:`native_isas`).
- :mod:`tvm_ops.netlist_plan`: the numpy lowering (literal folding, GroupSum head, liveness slots) that
  the TVM kernel and the C export share.
"""
from .netlist_compile import CompiledNetlist, clear_kernel_cache, compile_netlist, load_compiled_netlist
from .netlist_native import NativeNetlist, NativeUnavailable, compile_netlist_native, native_available, native_isas
from .netlist_plan import NetlistArrays, Plan, make_plan, netlist_arrays

__all__ = [
    "CompiledNetlist",
    "compile_netlist",
    "load_compiled_netlist",
    "clear_kernel_cache",
    "NativeNetlist",
    "NativeUnavailable",
    "compile_netlist_native",
    "native_available",
    "native_isas",
    "NetlistArrays",
    "Plan",
    "make_plan",
    "netlist_arrays",
]
