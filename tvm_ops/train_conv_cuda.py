"""The CUDA kernels of the logic-tree convolution (described in :func:`tvm_ops.train_conv.cuda_module`):
one thread per output for the forward, per (sample, channel) for the leaf gradients, per padded input
element for the input-gradient gather; no atomics."""
from __future__ import annotations

from .train_conv import (CUDA_FWD, CUDA_GX, CUDA_LEAF, CUDA_POOL_FWD, CUDA_POOL_GX, CUDA_POOL_LEAF, tree_macros)

__all__ = ["cuda_funcs"]


def cuda_funcs(dtype: str, depth: int, stride: int, threads: int = 128, serial: bool = False):
    """The six thread-bound CUDA functions by name (see :func:`tvm_ops.train_conv.cuda_module`); they use
    the CPU kernels' scalar macros (``tree_scalar``, ``backprop_scalar``), so both targets evaluate and
    differentiate the same formulas. With ``serial`` the thread loops are plain loops: the same kernels,
    runnable on the CPU (tests)."""
    from tvm.script import tirx as T

    L = 1 << depth
    G = L - 1  # gates
    N = 2 * L - 1  # nodes
    S = stride
    zero = 0.0
    m = tree_macros(dtype, depth, stride)
    tree_scalar, backprop_scalar = m.tree_scalar, m.backprop_scalar

    def bind(extent, tag):
        return T.serial(extent) if serial else T.thread_binding(extent, thread=tag)

    @T.prim_func
    def fwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, out_h: T.handle):
        T.func_attr({"global_symbol": CUDA_FWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Ho = T.int32()
        Wo = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, offset_factor=1)
        out = T.match_buffer(out_h, (B, O, Ho, Wo), dtype, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        outf = T.decl_buffer((B * O * Ho * Wo,), dtype, data=out.data, elem_offset=out.elem_offset)
        for bx in bind((B * O * Ho * Wo + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                u = T.alloc_buffer((N,), dtype, scope="local")
                if bx * threads + tx < B * O * Ho * Wo:
                    tree_scalar(u, xf, off, c, (bx * threads + tx) // (O * Ho * Wo) * (C * Hp * Wp),
                                (bx * threads + tx) // (Ho * Wo) % O,
                                (bx * threads + tx) // Wo % Ho * S * Wp + (bx * threads + tx) % Wo * S)
                    outf[bx * threads + tx] = u[N - 1]

    @T.prim_func
    def pool_fwd(xp_h: T.handle, off_h: T.handle, c_h: T.handle, out_h: T.handle, arg_h: T.handle):
        T.func_attr({"global_symbol": CUDA_POOL_FWD, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Hq = T.int32()
        Wq = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, offset_factor=1)
        out = T.match_buffer(out_h, (B, O, Hq, Wq), dtype, offset_factor=1)
        arg = T.match_buffer(arg_h, (B, O, Hq, Wq), "uint8", offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        outf = T.decl_buffer((B * O * Hq * Wq,), dtype, data=out.data, elem_offset=out.elem_offset)
        argf = T.decl_buffer((B * O * Hq * Wq,), "uint8", data=arg.data, elem_offset=arg.elem_offset)
        for bx in bind((B * O * Hq * Wq + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                u = T.alloc_buffer((N,), dtype, scope="local")
                best = T.alloc_buffer((1,), dtype, scope="local")
                am = T.alloc_buffer((1,), "int32", scope="local")
                if bx * threads + tx < B * O * Hq * Wq:
                    for w in range(4):  # window positions row-major; first maximum wins, NaN wins
                        tree_scalar(u, xf, off, c, (bx * threads + tx) // (O * Hq * Wq) * (C * Hp * Wp),
                                    (bx * threads + tx) // (Hq * Wq) % O,
                                    (2 * ((bx * threads + tx) // Wq % Hq) + w // 2) * S * Wp
                                    + (2 * ((bx * threads + tx) % Wq) + w % 2) * S)
                        if w == 0 or u[N - 1] > best[0] or T.isnan(u[N - 1]):
                            best[0] = u[N - 1]
                            am[0] = w
                    outf[bx * threads + tx] = best[0]
                    argf[bx * threads + tx] = T.Cast("uint8", am[0])

    @T.macro
    def leaf_body(xf, off, c, gf, lgf, cpart, bo, O, C, Hp, Wp, Hq, Wq, pooled, argf):
        """One thread per (sample, channel): every (pooled) output position in turn: recompute the
        tree (at the window's winner when pooled), back-propagate, store the leaf gradients in
        ``lg``, sum the coefficient gradients in registers and store them in ``cpart``."""
        u = T.alloc_buffer((N,), dtype, scope="local")
        gu = T.alloc_buffer((N,), dtype, scope="local")
        acc = T.alloc_buffer((G, 4, 1), dtype, scope="local")
        for g, k in T.grid(G, 4):
            acc[g, k, 0] = T.Cast(dtype, zero)
        for q in range(Hq * Wq):
            if pooled:
                tree_scalar(u, xf, off, c, bo // O * (C * Hp * Wp), bo % O,
                            (2 * (q // Wq) + T.Cast("int32", argf[bo * Hq * Wq + q]) // 2) * S * Wp
                            + (2 * (q % Wq) + T.Cast("int32", argf[bo * Hq * Wq + q]) % 2) * S)
            else:
                tree_scalar(u, xf, off, c, bo // O * (C * Hp * Wp), bo % O, q // Wq * S * Wp + q % Wq * S)
            gu[N - 1] = gf[bo * Hq * Wq + q]
            backprop_scalar(u, gu, acc, c, bo % O)
            for j in range(L):
                lgf[(bo * Hq * Wq + q) * L + j] = gu[j]
        for g, k in T.grid(G, 4):
            cpart[bo // O, bo % O, g, k] = acc[g, k, 0]

    @T.prim_func
    def leaf(xp_h: T.handle, off_h: T.handle, c_h: T.handle, g_h: T.handle, lg_h: T.handle, cpart_h: T.handle):
        T.func_attr({"global_symbol": CUDA_LEAF, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Ho = T.int32()
        Wo = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, offset_factor=1)
        gout = T.match_buffer(g_h, (B, O, Ho, Wo), dtype, offset_factor=1)
        lg = T.match_buffer(lg_h, (B, O, Ho, Wo, L), dtype, offset_factor=1)
        cpart = T.match_buffer(cpart_h, (B, O, G, 4), dtype, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        gf = T.decl_buffer((B * O * Ho * Wo,), dtype, data=gout.data, elem_offset=gout.elem_offset)
        lgf = T.decl_buffer((B * O * Ho * Wo * L,), dtype, data=lg.data, elem_offset=lg.elem_offset)
        for bx in bind((B * O + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                if bx * threads + tx < B * O:
                    leaf_body(xf, off, c, gf, lgf, cpart, bx * threads + tx, O, C, Hp, Wp, Ho, Wo, False, gf)

    @T.prim_func
    def pool_leaf(xp_h: T.handle, off_h: T.handle, c_h: T.handle, arg_h: T.handle, g_h: T.handle, lg_h: T.handle,
                  cpart_h: T.handle):
        T.func_attr({"global_symbol": CUDA_POOL_LEAF, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Hq = T.int32()
        Wq = T.int32()
        xp = T.match_buffer(xp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        off = T.match_buffer(off_h, (O, L), "int32", offset_factor=1)
        c = T.match_buffer(c_h, (O, G, 4), dtype, offset_factor=1)
        arg = T.match_buffer(arg_h, (B, O, Hq, Wq), "uint8", offset_factor=1)
        gout = T.match_buffer(g_h, (B, O, Hq, Wq), dtype, offset_factor=1)
        lg = T.match_buffer(lg_h, (B, O, Hq, Wq, L), dtype, offset_factor=1)
        cpart = T.match_buffer(cpart_h, (B, O, G, 4), dtype, offset_factor=1)
        xf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=xp.data, elem_offset=xp.elem_offset)
        argf = T.decl_buffer((B * O * Hq * Wq,), "uint8", data=arg.data, elem_offset=arg.elem_offset)
        gf = T.decl_buffer((B * O * Hq * Wq,), dtype, data=gout.data, elem_offset=gout.elem_offset)
        lgf = T.decl_buffer((B * O * Hq * Wq * L,), dtype, data=lg.data, elem_offset=lg.elem_offset)
        for bx in bind((B * O + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                if bx * threads + tx < B * O:
                    leaf_body(xf, off, c, gf, lgf, cpart, bx * threads + tx, O, C, Hp, Wp, Hq, Wq, True, argf)

    @T.macro
    def gx_body(lgf, ptr, eo, ej, erel, gxf, idx, O, C, Hp, Wp, Ho, Wo, pooled, argf):
        """``gxp`` element ``idx`` = (b, ch, y, x): the sum of the leaf gradients of every leaf that
        reads channel ``ch`` (the inverse index) at an output position covering (y, x); pooled, only
        where that position won its window."""
        acc = T.alloc_buffer((1,), dtype, scope="local")
        acc[0] = T.Cast(dtype, zero)
        for e in range(ptr[idx // (Hp * Wp) % C], ptr[idx // (Hp * Wp) % C + 1]):
            # output position (oy, ox) with oy*S + dy == y, ox*S + dx == x
            if (idx // Wp % Hp - erel[e] // Wp >= 0 and (idx // Wp % Hp - erel[e] // Wp) % S == 0
                    and idx % Wp - erel[e] % Wp >= 0 and (idx % Wp - erel[e] % Wp) % S == 0):
                if pooled:
                    if ((idx // Wp % Hp - erel[e] // Wp) // S < 2 * Ho and (idx % Wp - erel[e] % Wp) // S < 2 * Wo):
                        if T.Cast("int32", argf[((idx // (C * Hp * Wp) * O + eo[e]) * Ho
                                                 + (idx // Wp % Hp - erel[e] // Wp) // S // 2) * Wo
                                                + (idx % Wp - erel[e] % Wp) // S // 2]) == (
                                (idx // Wp % Hp - erel[e] // Wp) // S % 2 * 2 + (idx % Wp - erel[e] % Wp) // S % 2):
                            acc[0] = acc[0] + lgf[(((idx // (C * Hp * Wp) * O + eo[e]) * Ho
                                                    + (idx // Wp % Hp - erel[e] // Wp) // S // 2) * Wo
                                                   + (idx % Wp - erel[e] % Wp) // S // 2) * L + ej[e]]
                else:
                    if (idx // Wp % Hp - erel[e] // Wp) // S < Ho and (idx % Wp - erel[e] % Wp) // S < Wo:
                        acc[0] = acc[0] + lgf[(((idx // (C * Hp * Wp) * O + eo[e]) * Ho
                                                + (idx // Wp % Hp - erel[e] // Wp) // S) * Wo
                                               + (idx % Wp - erel[e] % Wp) // S) * L + ej[e]]
        gxf[idx] = acc[0]

    @T.prim_func
    def gx(lg_h: T.handle, ptr_h: T.handle, eo_h: T.handle, ej_h: T.handle, erel_h: T.handle, gxp_h: T.handle):
        T.func_attr({"global_symbol": CUDA_GX, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Ho = T.int32()
        Wo = T.int32()
        E = T.int32()
        C1 = T.int32()
        lg = T.match_buffer(lg_h, (B, O, Ho, Wo, L), dtype, offset_factor=1)
        ptr = T.match_buffer(ptr_h, (C1,), "int32", offset_factor=1)
        eo = T.match_buffer(eo_h, (E,), "int32", offset_factor=1)
        ej = T.match_buffer(ej_h, (E,), "int32", offset_factor=1)
        erel = T.match_buffer(erel_h, (E,), "int32", offset_factor=1)
        gxp = T.match_buffer(gxp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        lgf = T.decl_buffer((B * O * Ho * Wo * L,), dtype, data=lg.data, elem_offset=lg.elem_offset)
        gxf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=gxp.data, elem_offset=gxp.elem_offset)
        for bx in bind((B * C * Hp * Wp + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                if bx * threads + tx < B * C * Hp * Wp:
                    gx_body(lgf, ptr, eo, ej, erel, gxf, bx * threads + tx, O, C, Hp, Wp, Ho, Wo, False, ptr)

    @T.prim_func
    def pool_gx(lg_h: T.handle, arg_h: T.handle, ptr_h: T.handle, eo_h: T.handle, ej_h: T.handle, erel_h: T.handle,
                gxp_h: T.handle):
        T.func_attr({"global_symbol": CUDA_POOL_GX, "tirx.noalias": True})
        B = T.int32()
        C = T.int32()
        Hp = T.int32()
        Wp = T.int32()
        O = T.int32()
        Hq = T.int32()
        Wq = T.int32()
        E = T.int32()
        C1 = T.int32()
        lg = T.match_buffer(lg_h, (B, O, Hq, Wq, L), dtype, offset_factor=1)
        arg = T.match_buffer(arg_h, (B, O, Hq, Wq), "uint8", offset_factor=1)
        ptr = T.match_buffer(ptr_h, (C1,), "int32", offset_factor=1)
        eo = T.match_buffer(eo_h, (E,), "int32", offset_factor=1)
        ej = T.match_buffer(ej_h, (E,), "int32", offset_factor=1)
        erel = T.match_buffer(erel_h, (E,), "int32", offset_factor=1)
        gxp = T.match_buffer(gxp_h, (B, C, Hp, Wp), dtype, offset_factor=1)
        lgf = T.decl_buffer((B * O * Hq * Wq * L,), dtype, data=lg.data, elem_offset=lg.elem_offset)
        argf = T.decl_buffer((B * O * Hq * Wq,), "uint8", data=arg.data, elem_offset=arg.elem_offset)
        gxf = T.decl_buffer((B * C * Hp * Wp,), dtype, data=gxp.data, elem_offset=gxp.elem_offset)
        for bx in bind((B * C * Hp * Wp + threads - 1) // threads, "blockIdx.x"):
            for tx in bind(threads, "threadIdx.x"):
                if bx * threads + tx < B * C * Hp * Wp:
                    gx_body(lgf, ptr, eo, ej, erel, gxf, bx * threads + tx, O, C, Hp, Wp, Hq, Wq, True, argf)

    return {CUDA_FWD: fwd, CUDA_POOL_FWD: pool_fwd, CUDA_LEAF: leaf, CUDA_POOL_LEAF: pool_leaf, CUDA_GX: gx,
            CUDA_POOL_GX: pool_gx}
