"""Explicit short vectors for the channels-first row kernels.

LLVM vectorises a row loop 16 lanes wide and unrolls it 4 times on AVX-512, so
a row shorter than 64 cells runs in the scalar remainder: a 14-cell row of a
(64, 512, 14, 14) batch cost about 30 ns.  Numba leaves LLVM's SLP vectoriser
off, so fixed-length blocks do not vectorise either.  These intrinsics emit the
vector IR for a whole row directly: 8 (or, for rows of 4-7 cells, 4) lanes per
instruction, whole blocks and then one block that ends at the row's end and
overlaps the previous one (it rewrites the same values).  LLVM lowers the
vectors to what the CPU has (two SSE registers where AVX is missing).

Max follows the scalar kernels' rule lane by lane: a later value wins if larger
or NaN.  Sums add in their buffer's type (float64, or float32 for the small
windows of float32 averages: see ``pooling._sum_acc``), row by row and then
tap by tap as the scalar loops do; a stride-2 window's taps come from one wide
load and a shuffle.

The intrinsics do not check bounds.  Under ``NUMBA_BOUNDSCHECK=1`` the wrappers
check each row's span first (tests/test_hardening_bounds.py).
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import njit
from numba.core import cgutils, config, types
from numba.core.extending import intrinsic

_CHECK = bool(config.BOUNDSCHECK)
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)


@functools.cache
def has_avx512() -> bool:
    """Whether the CPU that Numba compiles for has AVX-512: 32 vector registers
    of 64 bytes and mask registers, against AVX2's 16 of 32 bytes and masks
    built in vector registers.  Some kernels here are shaped by that (see
    ``_short``'s users and ``_plane_sums8``)."""
    feats = config.CPU_FEATURES
    if feats is None:
        import llvmlite.binding as ll

        return bool(ll.get_host_cpu_features().get("avx512f", False))
    return "+avx512f" in feats.split(",")


@functools.cache
def has_avx() -> bool:
    """Whether the CPU that Numba compiles for has AVX (``_max_nonan``); a CPU
    named without its features (``NUMBA_CPU_NAME`` other than ``generic``,
    whose features Numba sets empty) counts as without: the host's features
    could name an instruction the named CPU lacks."""
    feats = config.CPU_FEATURES
    if feats is None:
        if config.CPU_NAME not in (None, "host"):
            return False
        import llvmlite.binding as ll

        return bool(ll.get_host_cpu_features().get("avx", False))
    return "+avx" in feats.split(",")


def _max_nonan(builder, a, b):
    """``b if b > a else a`` on float32 vectors holding no NaN, as the CPU's max
    instruction where it has AVX: written as a select, LLVM folds the widening
    of halves (``_half_rows``) through it and compares halves again."""
    L = a.type.count
    if not has_avx() or L % 8:
        return builder.select(builder.fcmp_ordered(">", b, a), b, a)
    v8 = ir.VectorType(ir.FloatType(), 8)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v8, [v8, v8]), "llvm.x86.avx.max.ps.256")
    if L == 8:
        return builder.call(fn, [b, a])
    parts = []
    for i in range(0, L, 8):
        lanes = ir.Constant(ir.VectorType(_I32, 8), list(range(i, i + 8)))
        parts.append(builder.call(fn, [builder.shuffle_vector(b, b, lanes), builder.shuffle_vector(a, a, lanes)]))
    while len(parts) > 1:
        n = parts[0].type.count
        both = ir.Constant(ir.VectorType(_I32, 2 * n), list(range(2 * n)))
        parts = [builder.shuffle_vector(parts[i], parts[i + 1], both) for i in range(0, len(parts), 2)]
    return parts[0]


def _cpu_has(*names) -> bool:
    """Whether the CPU that Numba compiles for has every feature ``names``
    (LLVM's names), judged as ``has_avx``."""
    feats = config.CPU_FEATURES
    if feats is None:
        if config.CPU_NAME not in (None, "host"):
            return False
        import llvmlite.binding as ll

        host = ll.get_host_cpu_features()
        return all(host.get(n, False) for n in names)
    named = feats.split(",")
    return all("+" + n in named for n in names)


@functools.cache
def has_avx512fp16() -> bool:
    """Whether the CPU computes on halves (AVX512-FP16: 32 lanes of float16 a
    vector, with their own compare and max), which ``half_rows32`` and
    ``half_wins32`` need."""
    return _cpu_has("avx512fp16", "avx512bw")


@functools.cache
def has_fma() -> bool:
    """Whether the CPU has fused multiply-add (``_exact_scaled``)."""
    return _cpu_has("fma")


@functools.cache
def _has_fpclass() -> bool:
    # vfpclassps on 8 and 16 lanes
    return _cpu_has("avx512f", "avx512dq", "avx512vl")


def _max_ph(builder, a, b):
    """``b if b > a else a`` on 32 halves holding no NaN: the CPU's max
    instruction for halves, the rule of ``_max_nonan``."""
    t = a.type
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t, t, _I32]),
                                        "llvm.x86.avx512fp16.max.ph.512")
    return builder.call(fn, [b, a, ir.Constant(_I32, 4)])


def _any_lane(builder, mask):
    """Whether any lane of an i1 vector is set."""
    any_ = builder.extract_element(mask, ir.Constant(_I32, 0))
    for j in range(1, mask.type.count):
        any_ = builder.or_(any_, builder.extract_element(mask, ir.Constant(_I32, j)))
    return any_


def _nan_lanes(builder, v, dtype):
    """Lane by lane, whether a float vector's cell is NaN (uint16: float16 bits,
    past infinity's)."""
    if dtype == types.uint16:
        mag = builder.and_(v, ir.Constant(v.type, [0x7FFF] * v.type.count))
        return builder.icmp_unsigned(">", mag, ir.Constant(v.type, [0x7C00] * v.type.count))
    return builder.fcmp_unordered("uno", v, v)


def _data(context, builder, aty, aval):
    return context.make_array(aty)(context, builder, aval).data


def _i64(context, builder, ty, v):
    return context.cast(builder, v, ty, types.int64)


def _load(builder, base, i, vty, align):
    p = builder.bitcast(builder.gep(base, [i]), vty.as_pointer())
    return builder.load(p, align=align)


def _store(builder, v, base, i, align):
    builder.store(v, builder.bitcast(builder.gep(base, [i]), v.type.as_pointer()), align=align)


def _takes(builder, a, b, dtype, nan=True):
    """Lane by lane, whether ``b`` replaces ``a``: ``b > a`` or ``b`` is NaN;
    ``nan=False`` drops the NaN test."""
    if dtype == types.uint16:
        # float16 bits (see max_rows): compared as halves (LLVM widens them with F16C)
        ht = ir.VectorType(ir.HalfType(), a.type.count)
        ah, bh = builder.bitcast(a, ht), builder.bitcast(b, ht)
        take = builder.fcmp_ordered(">", bh, ah)
        if nan:
            take = builder.or_(take, builder.fcmp_unordered("uno", bh, bh))
    elif isinstance(dtype, types.Float):
        take = builder.fcmp_ordered(">", b, a)
        if nan:
            take = builder.or_(take, builder.fcmp_unordered("uno", b, b))
    elif isinstance(dtype, types.Integer) and dtype.signed:
        take = builder.icmp_signed(">", b, a)
    else:
        take = builder.icmp_unsigned(">", b, a)
    return take


def _vmax(builder, a, b, dtype, nan=True):
    """``b if b > a or b is NaN else a`` lane by lane; ``nan=False`` drops the NaN
    test (one compare, which LLVM turns into a single max instruction) for data
    known to hold no NaN, where the two agree bit for bit (ties keep ``a``)."""
    return builder.select(_takes(builder, a, b, dtype, nan), b, a)


def _convert(builder, v, src, dst, L):
    """Lane-wise ``src`` -> ``dst`` (float64 accumulators and their results);
    ``L = 0``: a scalar."""
    if src == dst:
        return v
    dty = {types.float16: ir.HalfType(), types.float32: ir.FloatType(),
           types.float64: ir.DoubleType()}[dst]
    vty = ir.VectorType(dty, L) if L else dty
    if isinstance(src, types.Float):
        return (builder.fpext if src.bitwidth < dst.bitwidth else builder.fptrunc)(v, vty)
    if src.signed:
        return builder.sitofp(v, vty)
    return builder.uitofp(v, vty)


def _blocks(builder, n, L, emit):
    """``emit(i)`` for blocks at ``i = 0, L, 2L, ...`` while whole, then once at
    ``n - L`` if cells remain (that block overlaps the previous one)."""
    lv = ir.Constant(_I64, L)
    with cgutils.for_range(builder, builder.sdiv(n, lv)) as loop:
        emit(builder.mul(loop.index, lv))
    with builder.if_then(builder.icmp_signed("!=", builder.srem(n, lv), ir.Constant(_I64, 0))):
        emit(builder.sub(n, lv))


def _fold(builder, first, n, fixed, get, combine):
    """``combine`` the values ``get(0..n-1)``: unrolled when ``fixed``, else a
    loop carrying the value in a phi (through an alloca it measured 1.5-2.3x
    slower: the vector went through memory every step)."""
    if fixed:
        a = first
        for k in range(1, fixed):
            a = combine(a, get(ir.Constant(_I64, k)))
        return a
    one = ir.Constant(_I64, 1)
    pre = builder.block
    loop = builder.append_basic_block("fold.loop")
    done = builder.append_basic_block("fold.done")
    builder.cbranch(builder.icmp_signed(">", n, one), loop, done)
    builder.position_at_end(loop)
    k = builder.phi(_I64)
    acc = builder.phi(first.type)
    nxt = combine(acc, get(k))
    k1 = builder.add(k, one)
    tail = builder.block  # get() may have added blocks
    k.add_incoming(one, pre)
    k.add_incoming(k1, tail)
    acc.add_incoming(first, pre)
    acc.add_incoming(nxt, tail)
    builder.cbranch(builder.icmp_signed("<", k1, n), loop, done)
    builder.position_at_end(done)
    res = builder.phi(first.type)
    res.add_incoming(first, pre)
    res.add_incoming(nxt, tail)
    return res


def _rows(L, kind, fixed=0, planes=False, nan=True, runs=False, flag=False):
    """A whole row: ``buf[pl + w] = op over q < Q, r < R of x[o0 + q*qs + r*rs + w]``
    for ``w < W`` (``W >= L``, ``Q, R >= 1``; ``fixed``: R is that; Q, the
    depth taps of 3-D windows, is 1 unless ``planes``: a loop over planes in
    every block measured 1.3-2.5x slower on 2-D rows).  'max' keeps x's type;
    'sum' adds in buf's type, each plane's rows first; ``nan=False``: see
    ``_vmax``.  ``runs``: Q rows of output, ``buf[pl + q*W + w] = op over r < R
    of x[o0 + q*qs + r*rs + w]`` (windows strided on H, one call a run), rows
    of ``L < W <= 2L`` cells.  ``flag`` (max): returns whether a row read holds a
    NaN (uint16: float16 bits; False for integers)."""

    @intrinsic
    def rows(typingctx, x, o0, rs, R, qs, Q, W, buf, pl):
        def codegen(context, builder, sig, args):
            xty, bty = sig.args[0], sig.args[7]
            xp, bp = _data(context, builder, xty, args[0]), _data(context, builder, bty, args[7])
            o_0, r_s, n_r, q_s, n_q, n_w, p_l = (_i64(context, builder, sig.args[i], args[i])
                                                 for i in (1, 2, 3, 4, 5, 6, 8))
            xe, be = context.get_data_type(xty.dtype), context.get_data_type(bty.dtype)
            xv, xal, bal = ir.VectorType(xe, L), context.get_abi_sizeof(xe), context.get_abi_sizeof(be)
            if kind == "max":
                comb = lambda a, b: _vmax(builder, a, b, xty.dtype, nan)  # noqa: E731
            else:
                comb = builder.fadd
            seen = None
            if flag and (isinstance(xty.dtype, types.Float) or xty.dtype == types.uint16):
                seen = cgutils.alloca_once_value(builder, ir.Constant(ir.VectorType(ir.IntType(1), L), [0] * L))

            def block(w):
                def plane(q):
                    base = builder.add(builder.add(o_0, w), builder.mul(q, q_s))

                    def row(r):
                        v = _load(builder, xp, builder.add(base, builder.mul(r, r_s)), xv, xal)
                        if seen is not None:
                            builder.store(builder.or_(builder.load(seen), _nan_lanes(builder, v, xty.dtype)), seen)
                        return v if kind == "max" else _convert(builder, v, xty.dtype, bty.dtype, L)

                    return _fold(builder, row(ir.Constant(_I64, 0)), n_r, fixed, row, comb)

                if runs:
                    _store(builder, plane(q_run), bp, builder.add(builder.add(p_l, builder.mul(q_run, n_w)), w), bal)
                    return
                acc = plane(ir.Constant(_I64, 0))
                if planes:
                    acc = _fold(builder, acc, n_q, 0, plane, comb)
                _store(builder, acc, bp, builder.add(p_l, w), bal)

            if runs:
                with cgutils.for_range(builder, n_q) as loop:
                    q_run = loop.index
                    # rows of L + 1 to 2L cells: two blocks, at 0 and W - L, with
                    # no loop or count per row (with them: 1.4x the time)
                    block(ir.Constant(_I64, 0))
                    block(builder.sub(n_w, ir.Constant(_I64, L)))
            else:
                _blocks(builder, n_w, L, block)
            if flag:
                return ir.Constant(ir.IntType(1), 0) if seen is None else _any_lane(builder, builder.load(seen))
            return context.get_dummy_value()

        return (types.boolean if flag else types.void)(x, o0, rs, R, qs, Q, W, buf, pl), codegen

    return rows


def _half_rows(L, fixed=0):
    """``_rows``' 'max' over ``R`` rows of one plane for float16 bits (x
    uint16) into a float32 buffer: each half widened once (F16C) and combined
    with the CPU's max instruction (``_max_nonan``), which keeps the first of
    equal values, -0 and +0 included, as the NaN rule does.  Returns
    whether the rows hold a NaN; the buffer then is not their max and the
    caller redoes them on the bits (``max_rows``)."""

    @intrinsic
    def rows(typingctx, x, o0, rs, R, W, buf, pl):
        def codegen(context, builder, sig, args):
            xp, bp = _data(context, builder, sig.args[0], args[0]), _data(context, builder, sig.args[5], args[5])
            o_0, r_s, n_r, n_w, p_l = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 2, 3, 4, 6))
            it = ir.VectorType(ir.IntType(16), L)
            ht, ft = ir.VectorType(ir.HalfType(), L), ir.VectorType(ir.FloatType(), L)
            # the largest |bits| read: past 0x7C00 (infinity) is a NaN
            seen = cgutils.alloca_once_value(builder, ir.Constant(it, [0] * L))
            mag = ir.Constant(it, [0x7FFF] * L)

            def block(w):
                base = builder.add(o_0, w)

                def row(r):
                    h = _load(builder, xp, builder.add(base, builder.mul(r, r_s)), it, 2)
                    m, a = builder.and_(h, mag), builder.load(seen)
                    builder.store(builder.select(builder.icmp_signed(">", m, a), m, a), seen)
                    return builder.fpext(builder.bitcast(h, ht), ft)

                v = _fold(builder, row(ir.Constant(_I64, 0)), n_r, fixed, row, lambda a, b: _max_nonan(builder, a, b))
                _store(builder, v, bp, builder.add(p_l, w), 4)

            _blocks(builder, n_w, L, block)
            bad = builder.icmp_signed(">", builder.load(seen), ir.Constant(it, [0x7C00] * L))
            return _any_lane(builder, bad)

        return types.boolean(x, o0, rs, R, W, buf, pl), codegen

    return rows


def _half_rows32(fixed=0):
    """``_half_rows`` on CPUs with AVX512-FP16: the max of ``R`` rows of float16
    bits into a uint16 buffer, 32 halves a vector and no widening.  Returns
    whether the rows hold a NaN, as ``_half_rows``.  The max keeps a NaN of
    the first row and drops those of the others, so the NaN test is of the
    result and of the later rows, two rows a compare."""
    L = 32

    @intrinsic
    def rows(typingctx, x, o0, rs, R, W, buf, pl):
        def codegen(context, builder, sig, args):
            xp, bp = _data(context, builder, sig.args[0], args[0]), _data(context, builder, sig.args[5], args[5])
            o_0, r_s, n_r, n_w, p_l = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 2, 3, 4, 6))
            it, ht = ir.VectorType(ir.IntType(16), L), ir.VectorType(ir.HalfType(), L)
            mt = ir.VectorType(ir.IntType(1), L)
            seen = cgutils.alloca_once_value(builder, ir.Constant(mt, [0] * L))

            def note(a, b):
                builder.store(builder.or_(builder.load(seen), builder.fcmp_unordered("uno", a, b)), seen)

            def block(w):
                base = builder.add(o_0, w)

                def row(r):
                    h = _load(builder, xp, builder.add(base, builder.mul(r, r_s)), it, 2)
                    v = builder.bitcast(h, ht)
                    if not fixed:
                        with builder.if_then(builder.icmp_signed(">", r, ir.Constant(_I64, 0))):
                            note(v, v)
                    return v

                if fixed:
                    vs = [row(ir.Constant(_I64, r)) for r in range(fixed)]
                    v = vs[0]
                    for u in vs[1:]:
                        v = _max_ph(builder, v, u)
                    for r in range(1, fixed, 2):
                        note(vs[r], vs[min(r + 1, fixed - 1)])
                else:
                    v = _fold(builder, row(ir.Constant(_I64, 0)), n_r, 0, row, lambda a, b: _max_ph(builder, a, b))
                note(v, v)
                _store(builder, builder.bitcast(v, it), bp, builder.add(p_l, w), 2)

            _blocks(builder, n_w, L, block)
            return _any_lane(builder, builder.load(seen))

        return types.boolean(x, o0, rs, R, W, buf, pl), codegen

    return rows


def _half_wins32(s, fixed=0, adjacent=False):
    """``_wins``' max on rows of ``_half_rows32`` (uint16 buffer and output,
    rows without NaN), with the halves' own max.  Stride 1: 32 windows a block,
    tap k a load shifted by ``k*d`` cells.  Stride 2: 16 windows a block, from
    32-bit lanes that each hold a window's first cell and the one after it: a
    tap at an even offset is their low halves as they are, one at an odd offset
    the high halves shifted down; the max runs on all 32 halves and the low
    half of each 32-bit lane, packed, is the window's (one vpmovdw), against a
    permute of halves a tap.  ``adjacent``: d = 1, the taps' offsets known."""

    @intrinsic
    def wins(typingctx, buf, b0, out, oo, OW, K, d):
        def codegen(context, builder, sig, args):
            bp, op = _data(context, builder, sig.args[0], args[0]), _data(context, builder, sig.args[2], args[2])
            b_0, o_o, n_o, n_k, dil = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 3, 4, 5, 6))
            it, ht = ir.VectorType(ir.IntType(16), 32), ir.VectorType(ir.HalfType(), 32)
            dt = ir.VectorType(_I32, 16)
            one = ir.Constant(_I64, 1)

            def block(o):
                start = builder.add(b_0, o if s == 1 else builder.add(o, o))

                def tap(k):
                    off = k if adjacent else builder.mul(k, dil)
                    if s == 1:
                        return builder.bitcast(_load(builder, bp, builder.add(start, off), it, 2), ht)
                    if adjacent and isinstance(k, ir.Constant):
                        odd = k.constant & 1
                        v = _load(builder, bp, builder.add(start, ir.Constant(_I64, k.constant - odd)), dt, 2)
                        if odd:
                            v = builder.lshr(v, ir.Constant(dt, [16] * 16))
                        return builder.bitcast(v, ht)
                    odd = builder.and_(off, one)
                    v = _load(builder, bp, builder.add(start, builder.sub(off, odd)), dt, 2)
                    v = builder.select(builder.icmp_signed("!=", odd, ir.Constant(_I64, 0)),
                                       builder.lshr(v, ir.Constant(dt, [16] * 16)), v)
                    return builder.bitcast(v, ht)

                res = _fold(builder, tap(ir.Constant(_I64, 0)), n_k, fixed, tap, lambda a, b: _max_ph(builder, a, b))
                if s == 1:
                    _store(builder, builder.bitcast(res, it), op, builder.add(o_o, o), 2)
                else:
                    packed = builder.trunc(builder.bitcast(res, dt), ir.VectorType(ir.IntType(16), 16))
                    _store(builder, packed, op, builder.add(o_o, o), 2)

            _blocks(builder, n_o, 32 if s == 1 else 16, block)
            return context.get_dummy_value()

        return types.void(buf, b0, out, oo, OW, K, d), codegen

    return wins


def _wins(L0, s, kind, fixed=0, adjacent=False):
    """A whole row: ``out[oo + o] = op(buf[b0 + o*s + k*d] for k < K)`` for ``o < OW``
    (``OW >= L``; ``fixed``: K is that).  'sum' adds in buf's type,
    multiplies by ``mul[o]`` (in float64 where mul is) and rounds to out's
    type.  ``adjacent`` (``fixed`` K, d = 1): at stride 1 (max, or float64
    sums) the taps of a block are shuffled out of two loads, its L cells and
    the K - 1 after them, instead of K loads each shifted by a cell; at stride
    2 (K = 3, 32-bit cells) see ``lane2`` below."""

    @intrinsic
    def wins(typingctx, buf, b0, out, oo, mul, OW, K, d):
        def codegen(context, builder, sig, args):
            bty, oty, mty = sig.args[0], sig.args[2], sig.args[4]
            bp, op = _data(context, builder, bty, args[0]), _data(context, builder, oty, args[2])
            b_0, o_o, n_o, n_k, dil = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 3, 5, 6, 7))
            be, oe = context.get_data_type(bty.dtype), context.get_data_type(oty.dtype)
            # float32 multipliers: rows of reciprocals then divisors (``_exact_scaled``),
            # float32 sums and output, 16 lanes (OW >= 16)
            exact = kind == "sum" and mty.dtype == types.float32
            if exact and not (bty.dtype == types.float32 and oty.dtype == types.float32):
                raise TypeError("fastpool: (reciprocal, divisor) rows scale float32 sums into float32")
            L = 2 * L0 if exact else L0
            vt, wt = ir.VectorType(be, L), ir.VectorType(be, L * s)
            bal, oal = context.get_abi_sizeof(be), context.get_abi_sizeof(oe)
            mask = ir.Constant(ir.VectorType(_I32, L), [j * s for j in range(L)])
            stride = ir.Constant(_I64, s)

            # float32 sums take the K shifted loads: shuffled out of two, their
            # taps measured 1.3x slower (0.38-0.40 against 0.30 ns a cell, in
            # cache, (64, 56) rows)
            adj = adjacent and s == 1 and (kind == "max" or bty.dtype.bitwidth == 64 or exact)

            # stride 2, three adjacent 32-bit taps: each tap's eight cells in the
            # lane order of one in-lane shuffle (AVX2's vshufps) of a 16-cell
            # load, taps 0 and 1 from the same load, and one permute of the
            # result, against two shuffles a tap in cell order: the W pass of
            # (64, 56) rows k3 s2 in cache 9.4 -> 7.7 ns a row (float16's
            # widened rows 8.7 -> 6.8); (8, 256, 56, 56) k3 s2 p1 max float32
            # 1.49-1.53 -> 1.31-1.44 ms, float16 1.29-1.82 -> 1.24-1.31 ms
            lane2 = adjacent and s == 2 and fixed == 3 and L == 8 and bty.dtype.bitwidth == 32

            def block(o):
                start = builder.add(b_0, builder.mul(o, stride))
                if lane2:
                    w0 = _load(builder, bp, start, wt, bal)
                    w2 = _load(builder, bp, builder.add(start, ir.Constant(_I64, 2)), wt, bal)
                    ev = ir.Constant(ir.VectorType(_I32, 8), [0, 2, 8, 10, 4, 6, 12, 14])
                    od = ir.Constant(ir.VectorType(_I32, 8), [1, 3, 9, 11, 5, 7, 13, 15])
                    und = ir.Constant(wt, ir.Undefined)
                    taps = [builder.shuffle_vector(w0, und, ev), builder.shuffle_vector(w0, und, od),
                            builder.shuffle_vector(w2, und, ev)]
                    back = ir.Constant(ir.VectorType(_I32, 8), [0, 1, 4, 5, 2, 3, 6, 7])

                    def tapk(k):
                        return taps[k.constant]

                    def fix(v):
                        return builder.shuffle_vector(v, ir.Constant(v.type, ir.Undefined), back)

                    _taps_out(context, builder, kind, tapk, n_k, fixed, mty, args[4], o, bty, oty, L, op, o_o, oal, fix)
                    return
                if adj:
                    head = _load(builder, bp, start, vt, bal)
                    nt = fixed - 1
                    tail = _load(builder, bp, builder.add(start, ir.Constant(_I64, L)), ir.VectorType(be, nt), bal)
                    tail = builder.shuffle_vector(tail, ir.Constant(tail.type, ir.Undefined),
                                                  ir.Constant(ir.VectorType(_I32, L), list(range(nt)) + [nt] * (L - nt)))

                def tap(k):
                    if adj:
                        # cell j + k: lane j + k of head and tail side by side
                        k = k.constant
                        lanes = [j + k for j in range(L)]
                        return builder.shuffle_vector(head, tail, ir.Constant(ir.VectorType(_I32, L), lanes))
                    off = builder.add(start, builder.mul(k, dil))
                    if s == 1:
                        return _load(builder, bp, off, vt, bal)
                    w = _load(builder, bp, off, wt, bal)
                    return builder.shuffle_vector(w, ir.Constant(wt, ir.Undefined), mask)

                _taps_out(context, builder, kind, tap, n_k, fixed, mty, args[4], o, bty, oty, L, op, o_o, oal,
                          n_row=n_o if exact else None)

            _blocks(builder, n_o, L, block)
            return context.get_dummy_value()

        return types.void(buf, b0, out, oo, mul, OW, K, d), codegen

    return wins


def _scaled(builder, res, sty, mv, mty, oty, L):
    """Sums ``res`` (of ``sty``) times multipliers ``mv`` (of ``mty``), rounded to
    ``oty``: float32 sums are scaled in the multipliers' float64, as the
    channels-last passes scale theirs, so there is one rounding, to out's type."""
    wide = mty if mty.bitwidth > sty.bitwidth else sty
    res = builder.fmul(_convert(builder, res, sty, wide, L), _convert(builder, mv, mty, wide, L))
    return _convert(builder, res, wide, oty, L)


def _exact_scaled(builder, res, y, d):
    """float32 sums ``res`` divided by the whole numbers ``d`` (float32, 1 to
    ``EXACT_DIVISORS``), ``y`` = float32(1 / d): the float32 nearest to each
    quotient, which is what ``_scaled``'s product in float64 rounds to.  ``q =
    res * y`` and one correction, ``q - (q*d - res) * y``, with one rounding
    each (fused multiply-adds): on 16 lanes a product, two FMAs and one class
    test, against ``_scaled``'s two widenings, two products and two narrowings
    (the conversions 2 instructions each).  Checked against ``_scaled`` on
    every float32 for each such d (``tests/exhaustive_exact_divide.py``): one
    binade (beyond it both scale by powers of two while q is normal), every
    value under 2^-100 and the largest ones.  A subnormal q breaks the rule
    (ties in the subnormal range for even d), and an infinity's correction is
    NaN: a block with either, or a NaN, takes ``_scaled``'s way."""
    L = res.type.count
    ft = res.type
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ft, [ft, ft, ft]), f"llvm.fma.v{L}f32")
    q = builder.fmul(res, y)
    r = builder.call(fn, [q, d, builder.fneg(res)])
    c = builder.call(fn, [builder.fneg(r), y, q])
    if _has_fpclass() and L in (8, 16):
        # vfpclassps: one instruction for the three tests
        mt = ir.VectorType(ir.IntType(1), L)
        cls = cgutils.get_or_insert_function(builder.module, ir.FunctionType(mt, [ft, _I32]),
                                             f"llvm.x86.avx512.fpclass.ps.{32 * L}")
        other = builder.call(cls, [q, ir.Constant(_I32, 0xB9)])  # NaN, infinities, subnormal
    else:
        it = ir.VectorType(_I32, L)
        mag = builder.and_(builder.bitcast(q, it), ir.Constant(it, [0x7FFFFFFF] * L))
        other = builder.or_(builder.icmp_unsigned(">=", mag, ir.Constant(it, [0x7F800000] * L)),
                            builder.icmp_unsigned("<", builder.sub(mag, ir.Constant(it, [1] * L)),
                                                  ir.Constant(it, [0x007FFFFF] * L)))
    fast = builder.block
    # the lanes' bits as one integer: extracted lane by lane (``_any_lane``),
    # LLVM tested them with a branch each
    any_other = builder.icmp_unsigned("!=", builder.bitcast(other, ir.IntType(L)), ir.Constant(ir.IntType(L), 0))
    with builder.if_then(any_other, likely=False):
        dt = ir.VectorType(ir.DoubleType(), L)
        m = builder.fdiv(ir.Constant(dt, [1.0] * L), builder.fpext(d, dt))
        slow = builder.fptrunc(builder.fmul(builder.fpext(res, dt), m), ft)
        slow_block = builder.block
    out = builder.phi(ft)
    out.add_incoming(c, fast)
    out.add_incoming(slow, slow_block)
    return out


EXACT_DIVISORS = 64


def _taps_out(context, builder, kind, tap, n_k, fixed, mty, mval, o, bty, oty, L, op, o_o, oal, fix=None,
              n_row=None):
    """Store ``out[oo + o:oo + o + L]``: the ``n_k`` taps ``tap(k)`` of a block
    of windows combined ('max'), or added, times ``mul[o:o + L]`` and rounded
    to out's type ('sum'); with ``n_row``, float32 sums divided by
    ``mul[n_row + o:]`` as ``_exact_scaled`` does (``mul[o:]`` their
    reciprocals)."""
    # float16 rows widened into a float32 buffer (``half_rows``) hold no NaN
    widened = kind == "max" and bty.dtype == types.float32 and oty.dtype == types.uint16
    if kind == "max":
        comb = (lambda a, b: _max_nonan(builder, a, b)) if widened else (lambda a, b: _vmax(builder, a, b, bty.dtype))
    else:
        comb = builder.fadd
    res = _fold(builder, tap(ir.Constant(_I64, 0)), n_k, fixed, tap, comb)
    if fix is not None:
        res = fix(res)
    if widened:
        # exact: every value came from a half
        res = builder.bitcast(builder.fptrunc(res, ir.VectorType(ir.HalfType(), L)), ir.VectorType(ir.IntType(16), L))
    if kind == "sum":
        mp = _data(context, builder, mty, mval)
        me = context.get_data_type(mty.dtype)
        mv = _load(builder, mp, o, ir.VectorType(me, L), context.get_abi_sizeof(me))
        if n_row is not None:
            dv = _load(builder, mp, builder.add(o, n_row), ir.VectorType(me, L), 4)
            res = _exact_scaled(builder, res, mv, dv)
        else:
            res = _scaled(builder, res, bty.dtype, mv, mty.dtype, oty.dtype, L)
    _store(builder, res, op, builder.add(o_o, o), oal)


def _flat_wins(L, kind, fixed=0, s=1, centred=False):
    """Windows of stride ``s`` along rows of ``W = s * OW`` cells laid end to
    end, the rows pass's output for a run of whole rows: ``out[oo + o] =
    op(buf[b0 + s*o + k] for k < K)`` for ``o < n`` (``n >= L``), where a tap
    that falls off its own row (``s*col[o] + k - pL`` outside ``[0, W)``,
    ``col[o]`` being o's output column)
    counts as padding: 0 for 'sum' (then times ``mul[o]``, rounded to out's
    type), the max identity for 'max' (``_lowest``).  A whole plane in one
    pass: 14-cell rows spent more on per-row calls than on the cells.
    ``centred`` (``fixed`` 3, ``pL`` 1): the centre tap is never off its row,
    the first only at column 0 and the last only at column ``W - 1`` (never at
    stride 2): one compare where a tap can be off, none where it cannot."""

    @intrinsic
    def wins(typingctx, buf, b0, out, oo, mul, n, K, col, W, pL):
        def codegen(context, builder, sig, args):
            bty, oty, mty, cty = sig.args[0], sig.args[2], sig.args[4], sig.args[7]
            bp, op, cp = (_data(context, builder, sig.args[i], args[i]) for i in (0, 2, 7))
            b_0, o_o, n_o, n_k, w_, p_l = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 3, 5, 6, 8, 9))
            be, oe, ce = (context.get_data_type(t.dtype) for t in (bty, oty, cty))
            vt, cvt = ir.VectorType(be, L), ir.VectorType(ce, L)
            bal, oal, cal = (context.get_abi_sizeof(e) for e in (be, oe, ce))
            wv = _splat(builder, builder.trunc(w_, ce), L)
            # not a tap of the window in the padding's place: the sequential
            # rule keeps the first of equal maxima, and a later tap moved first
            # turned a window's -0.0 into its +0.0
            pad = ir.Constant(vt, [0.0 if kind == "sum" else _lowest(bty.dtype)] * L)

            wt = ir.VectorType(be, L * s)
            evens = ir.Constant(ir.VectorType(_I32, L), [j * s for j in range(L)])

            def block(o):
                start = builder.add(b_0, builder.mul(o, ir.Constant(_I64, s)))
                cv = _load(builder, cp, o, cvt, cal)
                if s > 1 and not centred:
                    cv = builder.mul(cv, _splat(builder, ir.Constant(ce, s), L))

                def tap(k):
                    if s == 1:
                        v = _load(builder, bp, builder.add(start, k), vt, bal)
                    else:
                        w = _load(builder, bp, builder.add(start, k), wt, bal)
                        v = builder.shuffle_vector(w, ir.Constant(wt, ir.Undefined), evens)
                    if centred:
                        k = k.constant
                        if k == 1 or (k == 2 and s > 1):
                            return v
                        edge = (ir.Constant(cvt, [0] * L) if k == 0
                                else builder.sub(wv, _splat(builder, ir.Constant(ce, 1), L)))
                        return builder.select(builder.icmp_unsigned("!=", cv, edge), v, pad)
                    # unsigned: one compare tests both ends of the row
                    c = builder.add(cv, _splat(builder, builder.trunc(builder.sub(k, p_l), ce), L))
                    return builder.select(builder.icmp_unsigned("<", c, wv), v, pad)

                _taps_out(context, builder, kind, tap, n_k, fixed, mty, args[4], o, bty, oty, L, op, o_o, oal)

            _blocks(builder, n_o, L, block)
            return context.get_dummy_value()

        return types.void(buf, b0, out, oo, mul, n, K, col, W, pL), codegen

    return wins


def _lowest(dtype):
    """The max identity of a buffer's type: -inf, float16's -inf as uint16
    bits (see ``max_rows``), or the integer type's least value."""
    if isinstance(dtype, types.Float):
        return float("-inf")
    if dtype == types.uint16:
        return 0xFC00
    return -(1 << (dtype.bitwidth - 1)) if dtype.signed else 0


def _masked(builder, name, vty, args):
    """``llvm.masked.load`` / ``llvm.masked.store`` of a vector of ``vty``:
    the lanes outside the mask are not touched (no fault past an array's end)."""
    e = vty.element
    tag = {ir.FloatType: "f32", ir.DoubleType: "f64", ir.HalfType: "f16"}.get(type(e)) or f"i{e.width}"
    ptr = args[0 if name == "load" else 1].type
    if name == "load":
        fty = ir.FunctionType(vty, [ptr, _I32, ir.VectorType(ir.IntType(1), vty.count), vty])
    else:
        fty = ir.FunctionType(ir.VoidType(), [vty, ptr, _I32, ir.VectorType(ir.IntType(1), vty.count)])
    fn = cgutils.get_or_insert_function(builder.module, fty, f"llvm.masked.{name}.v{vty.count}{tag}.p0")
    return builder.call(fn, args)


def _short(kind, s, K, L=16, fixed=0):
    """A whole output row of a short input row, in registers: ``out[oo + o] =
    op(row[o*s + k - pl] for k < K)`` for ``o < OW``, where ``row[w]`` is ``op``
    over ``q < Q``, ``r < R`` of ``x[o0 + q*qs + r*rs + w]`` for ``0 <= w < W``
    and ``pad`` elsewhere (the padding: the max identity, or 0 for 'sum');
    ``fixed``: R is that and Q is 1.
    Lane ``j`` holds cell ``j - pl``, so every window must end by lane ``L - 1``
    (``s*(OW - 1) + K <= L``).  'sum' adds in ``pad``'s type, rows first,
    multiplies by ``mul[o]`` and rounds to out's type, as ``_rows`` and
    ``_wins`` do with their buffer's type.
    Masked loads read only the row's own cells and a masked store writes only
    the row's outputs: no row buffer between the two passes, whose stores and
    overlapping reloads cost more than the cells on rows of 7-16 cells."""

    @intrinsic
    def short(typingctx, x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad):
        def codegen(context, builder, sig, args):
            xty, oty, mty = sig.args[0], sig.args[8], sig.args[10]
            xp, op = _data(context, builder, xty, args[0]), _data(context, builder, oty, args[8])
            o_0, r_s, n_r, q_s, n_q, n_w, p_l, o_o, n_o = (_i64(context, builder, sig.args[i], args[i])
                                                           for i in (1, 2, 3, 4, 5, 6, 7, 9, 11))
            xe, oe = context.get_data_type(xty.dtype), context.get_data_type(oty.dtype)
            xv, ov = ir.VectorType(xe, L), ir.VectorType(oe, L)
            xal, oal = (ir.Constant(_I32, context.get_abi_sizeof(e)) for e in (xe, oe))
            lanes = ir.Constant(ir.VectorType(_I64, L), list(range(L)))
            # unsigned: one compare tests both ends of the row
            inrow = builder.icmp_unsigned("<", builder.sub(lanes, _splat(builder, p_l, L)), _splat(builder, n_w, L))
            outs = builder.icmp_signed("<", lanes, _splat(builder, n_o, L))
            padv = _splat(builder, context.cast(builder, args[12], sig.args[12], xty.dtype), L)
            start = builder.sub(o_0, p_l)
            sty = sig.args[12]
            if kind == "max":
                comb = lambda a, b: _vmax(builder, a, b, xty.dtype)  # noqa: E731
            else:
                comb = builder.fadd

            def plane(q):
                base = builder.add(start, builder.mul(q, q_s))

                def row(r):
                    at = builder.gep(xp, [builder.add(base, builder.mul(r, r_s))])
                    v = _masked(builder, "load", xv, [at, xal, inrow, padv])
                    return v if kind == "max" else _convert(builder, v, xty.dtype, sty, L)

                return _fold(builder, row(ir.Constant(_I64, 0)), n_r, fixed, row, comb)

            acc = plane(ir.Constant(_I64, 0)) if fixed else _fold(builder, plane(ir.Constant(_I64, 0)), n_q, 0, plane, comb)

            def tap(k):
                sel = [min(o * s + k, 2 * L - 1) for o in range(L)]
                return builder.shuffle_vector(acc, ir.Constant(acc.type, ir.Undefined),
                                              ir.Constant(ir.VectorType(_I32, L), sel))

            res = tap(0)
            for k in range(1, K):
                res = comb(res, tap(k))
            if kind == "sum":
                me = context.get_data_type(mty.dtype)
                mp = _data(context, builder, mty, args[10])
                mv = _masked(builder, "load", ir.VectorType(me, L),
                             [mp, ir.Constant(_I32, context.get_abi_sizeof(me)), outs,
                              ir.Constant(ir.VectorType(me, L), [0.0] * L)])
                if mty.dtype == types.float32:
                    # (reciprocal, divisor) rows (``_exact_scaled``)
                    if not (sty == types.float32 and oty.dtype == types.float32):
                        raise TypeError("fastpool: (reciprocal, divisor) rows scale float32 sums into float32")
                    dv = _masked(builder, "load", ir.VectorType(me, L),
                                 [builder.gep(mp, [n_o]), ir.Constant(_I32, 4), outs,
                                  ir.Constant(ir.VectorType(me, L), [1.0] * L)])
                    res = _exact_scaled(builder, res, mv, dv)
                else:
                    res = _scaled(builder, res, sty, mv, mty.dtype, oty.dtype, L)
            _masked(builder, "store", ov, [res, builder.gep(op, [o_o]), oal, outs])
            return context.get_dummy_value()

        return types.void(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad), codegen

    return short


def _plane_sum(L):
    """``sum(x[o0:o0 + S])`` in float64: two L-lane accumulators over whole
    blocks (one more block into the first), lanes added pairwise, then the
    last ``S % L`` cells in order.  The order is fixed, so the sum does not
    depend on the thread count."""

    @intrinsic
    def plane_sum(typingctx, x, o0, S):
        def codegen(context, builder, sig, args):
            xty = sig.args[0]
            xp = _data(context, builder, xty, args[0])
            base, n = _i64(context, builder, sig.args[1], args[1]), _i64(context, builder, sig.args[2], args[2])
            xe = context.get_data_type(xty.dtype)
            vt, xal = ir.VectorType(xe, L), context.get_abi_sizeof(xe)
            zero = ir.Constant(ir.VectorType(ir.DoubleType(), L), [0.0] * L)
            acc = [cgutils.alloca_once_value(builder, zero) for _ in range(2)]
            lv, lv2 = ir.Constant(_I64, L), ir.Constant(_I64, 2 * L)

            def add(slot, i):
                v = _convert(builder, _load(builder, xp, builder.add(base, i), vt, xal), xty.dtype, types.float64, L)
                builder.store(builder.fadd(builder.load(slot), v), slot)

            pairs = builder.mul(builder.sdiv(n, lv2), lv2)
            with cgutils.for_range_slice(builder, ir.Constant(_I64, 0), pairs, lv2, inc=True) as (i, _):
                add(acc[0], i)
                add(acc[1], builder.add(i, lv))
            one_more = builder.icmp_signed(">=", builder.sub(n, pairs), lv)
            with builder.if_then(one_more):
                add(acc[0], pairs)
            v = builder.fadd(builder.load(acc[0]), builder.load(acc[1]))
            w = L
            while w > 1:
                w //= 2
                half = [ir.Constant(ir.VectorType(_I32, w), list(range(o, o + w))) for o in (0, w)]
                v = builder.fadd(builder.shuffle_vector(v, v, half[0]), builder.shuffle_vector(v, v, half[1]))
            total = cgutils.alloca_once_value(builder, builder.extract_element(v, ir.Constant(_I32, 0)))
            rest = builder.add(pairs, builder.select(one_more, lv, ir.Constant(_I64, 0)))
            with cgutils.for_range_slice(builder, rest, n, ir.Constant(_I64, 1), inc=True) as (i, _):
                e = builder.load(builder.gep(xp, [builder.add(base, i)]))
                e = _convert(builder, e, xty.dtype, types.float64, 0)
                builder.store(builder.fadd(builder.load(total), e), total)
            return builder.load(total)

        return types.float64(x, o0, S), codegen

    return plane_sum


def _planes_to_lanes(builder, vs, L, comb):
    """``L`` vectors, ``vs[q]`` lane i plane q's partial result, -> one vector
    whose lane q is plane q's lanes combined as ``_plane_sum`` adds them (lanes
    i and i + w, for w = L/2, L/4, ... 1): each step pairs vectors (a, b) into
    one holding both planes' halves combined, lanes [a_i + a_(i+w) for i < w] +
    [b_i + b_(i+w) for i < w] per group of planes, a transpose of shuffles."""
    w = L
    while len(vs) > 1:
        w //= 2
        g = L // (2 * w)  # planes per vector before this step
        lo, hi = [], []
        for src in (0, 1):
            for k in range(g):
                lo += [src * L + k * 2 * w + j for j in range(w)]
                hi += [src * L + k * 2 * w + w + j for j in range(w)]
        lo_m = ir.Constant(ir.VectorType(_I32, L), lo)
        hi_m = ir.Constant(ir.VectorType(_I32, L), hi)
        vs = [comb(builder.shuffle_vector(a, b, lo_m), builder.shuffle_vector(a, b, hi_m))
              for a, b in zip(vs[0::2], vs[1::2])]
    return vs[0]


def _tiles(fixed=0):
    """``out[oo + o] = sum(buf[b0 + o*K + k] for k < K) * mul[o]``, rounded to
    out's type, for ``o < OW`` (``OW >= 4``; ``K`` a multiple of 4; float64
    ``buf``): windows end to end, as adaptive averages that divide their input
    evenly take them.  Each window's cells add as 4-lane vectors in order, and
    four windows' vectors become one vector of their four sums as one transpose
    (``_planes_to_lanes``), against one scalar add a cell; ``fixed``: K // 4 is
    that."""
    L = 4

    @intrinsic
    def tiles(typingctx, buf, b0, out, oo, mul, OW, K):
        def codegen(context, builder, sig, args):
            bty, oty, mty = sig.args[0], sig.args[2], sig.args[4]
            bp, op, mp = (_data(context, builder, sig.args[i], args[i]) for i in (0, 2, 4))
            b_0, o_o, n_o, n_k = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 3, 5, 6))
            be, oe, me = (context.get_data_type(t.dtype) for t in (bty, oty, mty))
            vt = ir.VectorType(be, L)
            bal, oal, mal = (context.get_abi_sizeof(e) for e in (be, oe, me))
            lv = ir.Constant(_I64, L)
            chunks = builder.sdiv(n_k, lv)

            def block(o):
                def window(j):
                    start = builder.add(b_0, builder.mul(builder.add(o, ir.Constant(_I64, j)), n_k))

                    def chunk(c):
                        return _load(builder, bp, builder.add(start, builder.mul(c, lv)), vt, bal)

                    return _fold(builder, chunk(ir.Constant(_I64, 0)), chunks, fixed, chunk, builder.fadd)

                res = _planes_to_lanes(builder, [window(j) for j in range(L)], L, builder.fadd)
                mv = _load(builder, mp, o, ir.VectorType(me, L), mal)
                res = _scaled(builder, res, bty.dtype, mv, mty.dtype, oty.dtype, L)
                _store(builder, res, op, builder.add(o_o, o), oal)

            _blocks(builder, n_o, L, block)
            return context.get_dummy_value()

        return types.void(buf, b0, out, oo, mul, OW, K), codegen

    return tiles


def _cells_of_planes(builder, xp, starts, i, vt):
    """The vector of cell ``i`` of each plane (``xp[starts[q] + i]`` in lane q)."""
    t = ir.Constant(vt, ir.Undefined)
    for q, st in enumerate(starts):
        t = builder.insert_element(t, builder.load(builder.gep(xp, [builder.add(st, i)])), ir.Constant(_I32, q))
    return t


def _blocks_of_planes(builder, L, G, first, pairs, one_more, starts, acc, step, comb):
    """Each plane ``q``'s L-cell blocks into its two accumulators ``acc[q]``
    (``step(slot, cell)``), ``G`` planes at a time: blocks ``first, first + 2L,
    ...`` below ``pairs`` into the first and the block after each into the
    second, then the block at ``pairs`` into the first if ``one_more``; ->
    each plane's two accumulators ``comb``-ined, in plane order."""
    lv, lv2 = ir.Constant(_I64, L), ir.Constant(_I64, 2 * L)
    vs = []
    for g0 in range(0, L, G):
        with cgutils.for_range_slice(builder, first, pairs, lv2, inc=True) as (i, _):
            for q in range(g0, g0 + G):
                step(acc[q][0], builder.add(starts[q], i))
                step(acc[q][1], builder.add(starts[q], builder.add(i, lv)))
        with builder.if_then(one_more):
            for q in range(g0, g0 + G):
                step(acc[q][0], builder.add(starts[q], pairs))
        vs += [comb(builder.load(a[0]), builder.load(a[1])) for a in acc[g0:g0 + G]]
    return vs


def _plane_sums8(G=8):
    """``out[r0 + p] = plane_sum(x, o0 + p*S, S) / div`` for the 8 planes
    ``p < 8``, rounded to out's type: each plane's sum in ``_plane_sum(8)``'s
    order, bit for bit.  One plane's lane reduction and tail is a chain of
    dependent adds as long as its blocks (7x7 planes: ~30 cycles a plane);
    eight planes' reductions run as one transpose (8 -> 4 -> 2 -> 1 vectors,
    each step adding lanes i and i + w of every plane as ``_plane_sum`` does),
    the tail cells go in as 8-lane vectors, and one division and one store
    serve all eight.  The blocks of ``G`` planes at a time: the eight planes'
    sixteen float64 accumulators fill AVX-512's registers but spill from
    AVX2's, where two planes at a time ran 1.6-1.8x faster than eight (2**16
    7x7 planes, float32 and float64, one thread, AMD EPYC); each plane's
    order, and so its bits, is the same for any ``G``."""
    L = 8

    @intrinsic
    def plane_sums(typingctx, x, o0, S, out, r0, div):
        def codegen(context, builder, sig, args):
            xty, oty = sig.args[0], sig.args[3]
            xp, op = _data(context, builder, xty, args[0]), _data(context, builder, oty, args[3])
            base, n, r_0 = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 2, 4))
            dv = context.cast(builder, args[5], sig.args[5], types.float64)
            xe, oe = context.get_data_type(xty.dtype), context.get_data_type(oty.dtype)
            vt, xal = ir.VectorType(xe, L), context.get_abi_sizeof(xe)
            dt = ir.VectorType(ir.DoubleType(), L)
            zero = ir.Constant(dt, [0.0] * L)
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(2)] for _ in range(L)]
            starts = [builder.add(base, builder.mul(n, ir.Constant(_I64, q))) for q in range(L)]
            lv, lv2 = ir.Constant(_I64, L), ir.Constant(_I64, 2 * L)

            def add(slot, at):
                v = _convert(builder, _load(builder, xp, at, vt, xal), xty.dtype, types.float64, L)
                builder.store(builder.fadd(builder.load(slot), v), slot)

            pairs = builder.mul(builder.sdiv(n, lv2), lv2)
            one_more = builder.icmp_signed(">=", builder.sub(n, pairs), lv)
            vs = _blocks_of_planes(builder, L, G, ir.Constant(_I64, 0), pairs, one_more, starts, acc, add, builder.fadd)
            total = cgutils.alloca_once_value(builder, _planes_to_lanes(builder, vs, L, builder.fadd))
            rest = builder.add(pairs, builder.select(one_more, lv, ir.Constant(_I64, 0)))
            with cgutils.for_range_slice(builder, rest, n, ir.Constant(_I64, 1), inc=True) as (i, _):
                t = _convert(builder, _cells_of_planes(builder, xp, starts, i, vt), xty.dtype, types.float64, L)
                builder.store(builder.fadd(builder.load(total), t), total)
            res = builder.fdiv(builder.load(total), _splat(builder, dv, L))
            res = _convert(builder, res, types.float64, oty.dtype, L)
            _store(builder, res, op, r_0, context.get_abi_sizeof(oe))
            return context.get_dummy_value()

        return types.void(x, o0, S, out, r0, div), codegen

    return plane_sums


def _plane_maxes8(G=8):
    """``out[r0 + p] = max(x[o0 + p*S:o0 + (p + 1)*S])`` for the 8 planes
    ``p < 8`` (``S >= 16``), by ``_vmax``'s rule (NaN wins): each plane's
    blocks into two 8-lane vectors, then the eight planes' lanes reduced as one
    transpose (as ``_plane_sums8`` adds them), the last ``S % 8`` cells as
    8-lane vectors, one store for all eight.  A plane at a time, its lane
    reduction and tail are a chain as long as the plane (7x7 planes).  ``G``
    as ``_plane_sums8``'s (two planes at a time 0.7-1.0x eight's time there,
    float32)."""
    L = 8

    @intrinsic
    def plane_maxes(typingctx, x, o0, S, out, r0):
        def codegen(context, builder, sig, args):
            xty, oty = sig.args[0], sig.args[3]
            xp, op = _data(context, builder, xty, args[0]), _data(context, builder, oty, args[3])
            base, n, r_0 = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 2, 4))
            xe = context.get_data_type(xty.dtype)
            vt, xal = ir.VectorType(xe, L), context.get_abi_sizeof(xe)
            starts = [builder.add(base, builder.mul(n, ir.Constant(_I64, q))) for q in range(L)]
            lv, lv2 = ir.Constant(_I64, L), ir.Constant(_I64, 2 * L)
            comb = lambda a, b: _vmax(builder, a, b, xty.dtype)  # noqa: E731
            acc = [[cgutils.alloca_once_value(builder, _load(builder, xp, builder.add(starts[q], ir.Constant(_I64, h * L)),
                                                             vt, xal)) for h in range(2)] for q in range(L)]

            def more(slot, at):
                builder.store(comb(builder.load(slot), _load(builder, xp, at, vt, xal)), slot)

            pairs = builder.mul(builder.sdiv(n, lv2), lv2)
            one_more = builder.icmp_signed(">=", builder.sub(n, pairs), lv)
            # the first two blocks are the accumulators' starting values
            vs = _blocks_of_planes(builder, L, G, lv2, pairs, one_more, starts, acc, more, comb)
            total = cgutils.alloca_once_value(builder, _planes_to_lanes(builder, vs, L, comb))
            rest = builder.add(pairs, builder.select(one_more, lv, ir.Constant(_I64, 0)))
            with cgutils.for_range_slice(builder, rest, n, ir.Constant(_I64, 1), inc=True) as (i, _):
                builder.store(comb(builder.load(total), _cells_of_planes(builder, xp, starts, i, vt)), total)
            _store(builder, builder.load(total), op, r_0, context.get_abi_sizeof(context.get_data_type(oty.dtype)))
            return context.get_dummy_value()

        return types.void(x, o0, S, out, r0), codegen

    return plane_maxes


def _splat(builder, v, L):
    vec = builder.insert_element(ir.Constant(ir.VectorType(v.type, L), ir.Undefined), v, ir.Constant(_I32, 0))
    return builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(_I32, L), [0] * L))


def _quads(L, kind):
    """A whole output row of 2x2 stride-2 windows: 'sum': ``out[oo + o] = ((x[a + 2o] +
    x[a + rs + 2o]) + (x[a + 2o + 1] + x[a + rs + 2o + 1])) * mul[o]`` in float64
    for ``o < OW`` (``OW >= L``), rounded to out's type; 'max' the same with
    ``_vmax`` (``mul`` unused): the order of the rows then the windows passes,
    with no row buffer between them."""

    @intrinsic
    def quads(typingctx, x, a, rs, out, oo, mul, OW):
        def codegen(context, builder, sig, args):
            xty, oty, mty = sig.args[0], sig.args[3], sig.args[5]
            xp, op, mp = (_data(context, builder, sig.args[i], args[i]) for i in (0, 3, 5))
            a_0, r_s, o_o, n_o = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 2, 4, 6))
            xe, oe, me = (context.get_data_type(t.dtype) for t in (xty, oty, mty))
            xal, oal, mal = (context.get_abi_sizeof(e) for e in (xe, oe, me))
            wide = ir.VectorType(xe, 2 * L)
            even = ir.Constant(ir.VectorType(_I32, L), [2 * j for j in range(L)])
            odd = ir.Constant(ir.VectorType(_I32, L), [2 * j + 1 for j in range(L)])
            two = ir.Constant(_I64, 2)

            def block(o):
                i = builder.add(a_0, builder.mul(o, two))
                r0 = _load(builder, xp, i, wide, xal)
                r1 = _load(builder, xp, builder.add(i, r_s), wide, xal)
                if kind == "max":
                    r = _vmax(builder, r0, r1, xty.dtype)
                    und = ir.Constant(r.type, ir.Undefined)
                    res = _vmax(builder, builder.shuffle_vector(r, und, even), builder.shuffle_vector(r, und, odd),
                                xty.dtype)
                else:
                    r0 = _convert(builder, r0, xty.dtype, types.float64, 2 * L)
                    r1 = _convert(builder, r1, xty.dtype, types.float64, 2 * L)
                    r = builder.fadd(r0, r1)
                    und = ir.Constant(r.type, ir.Undefined)
                    t = builder.fadd(builder.shuffle_vector(r, und, even), builder.shuffle_vector(r, und, odd))
                    m = _convert(builder, _load(builder, mp, o, ir.VectorType(me, L), mal), mty.dtype, types.float64, L)
                    res = _convert(builder, builder.fmul(t, m), types.float64, oty.dtype, L)
                _store(builder, res, op, builder.add(o_o, o), oal)

            _blocks(builder, n_o, L, block)
            return context.get_dummy_value()

        return types.void(x, a, rs, out, oo, mul, OW), codegen

    return quads


_QUADS8, _QUADS4 = _quads(8, "sum"), _quads(4, "sum")
_MAXQUADS8, _MAXQUADS4 = _quads(8, "max"), _quads(4, "max")


def _stream():
    """``dst[d0:d0 + n] = src[s0:s0 + n]`` with non-temporal stores from the
    first 64-byte boundary of dst on (plain ones before it, for the last
    partial vector, and for all of a dst misaligned to its element size), then
    a fence: a result written once and not read back soon skips the read that
    a cached store of a line not in cache costs."""

    @intrinsic
    def stream(typingctx, src, s0, dst, d0, n):
        def codegen(context, builder, sig, args):
            sty, dty = sig.args[0], sig.args[2]
            sp, dp = _data(context, builder, sty, args[0]), _data(context, builder, dty, args[2])
            s_0, d_0, cnt = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 3, 4))
            e = context.get_data_type(dty.dtype)
            es = context.get_abi_sizeof(e)
            L = 64 // es
            vt = ir.VectorType(e, L)
            addr = builder.ptrtoint(builder.gep(dp, [d_0]), _I64)
            head = builder.udiv(builder.and_(builder.sub(ir.Constant(_I64, 64), builder.and_(addr, ir.Constant(_I64, 63))),
                                             ir.Constant(_I64, 63)), ir.Constant(_I64, es))
            head = builder.select(builder.icmp_signed("<", cnt, head), cnt, head)
            # a dst not aligned to its own elements never reaches a 64-byte boundary
            odd_dst = builder.icmp_unsigned("!=", builder.and_(addr, ir.Constant(_I64, es - 1)), ir.Constant(_I64, 0))
            head = builder.select(odd_dst, cnt, head)
            nv = builder.sdiv(builder.sub(cnt, head), ir.Constant(_I64, L))
            body_end = builder.add(head, builder.mul(nv, ir.Constant(_I64, L)))
            nt = builder.module.add_metadata([ir.Constant(_I32, 1)])

            def scalar(i):
                v = builder.load(builder.gep(sp, [builder.add(s_0, i)]))
                builder.store(v, builder.gep(dp, [builder.add(d_0, i)]))

            with cgutils.for_range_slice(builder, ir.Constant(_I64, 0), head, ir.Constant(_I64, 1), inc=True) as (i, _):
                scalar(i)
            with cgutils.for_range_slice(builder, head, body_end, ir.Constant(_I64, L), inc=True) as (i, _):
                v = _load(builder, sp, builder.add(s_0, i), vt, es)
                st = builder.store(v, builder.bitcast(builder.gep(dp, [builder.add(d_0, i)]), vt.as_pointer()), align=64)
                st.set_metadata("nontemporal", nt)
            with cgutils.for_range_slice(builder, body_end, cnt, ir.Constant(_I64, 1), inc=True) as (i, _):
                scalar(i)
            builder.fence("seq_cst")
            return context.get_dummy_value()

        return types.void(src, s0, dst, d0, n), codegen

    return stream


_STREAM = _stream()


def _prefetch():
    """A hint to bring the lines of ``x[o0:o0 + n]`` into L2 (``llvm.prefetch``,
    read, locality 2): what a kernel that computes between its reads asks for
    ahead, since the hardware prefetchers follow only the reads it makes."""

    @intrinsic
    def prefetch(typingctx, x, o0, n):
        def codegen(context, builder, sig, args):
            xp = _data(context, builder, sig.args[0], args[0])
            o_0, cnt = (_i64(context, builder, sig.args[i], args[i]) for i in (1, 2))
            es = context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype))
            i8p = ir.IntType(8).as_pointer()
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]),
                                                "llvm.prefetch.p0")
            start = builder.bitcast(builder.gep(xp, [o_0]), i8p)
            nbytes = builder.mul(cnt, ir.Constant(_I64, es))
            with cgutils.for_range_slice(builder, ir.Constant(_I64, 0), nbytes, ir.Constant(_I64, 64), inc=True) as (i, _):
                builder.call(fn, [builder.gep(start, [i]), ir.Constant(_I32, 0), ir.Constant(_I32, 2),
                                  ir.Constant(_I32, 1)])
            return context.get_dummy_value()

        return types.void(x, o0, n), codegen

    return prefetch


_PREFETCH = _prefetch()


@njit(inline="always")
def _span(a, lo, n):
    # only compiled in under NUMBA_BOUNDSCHECK=1
    if lo < 0 or lo + n > a.size:
        raise IndexError("fastpool: vector row outside its array")


@njit(inline="always")
def _check_rows(x, o0, rs, R, qs, Q, W, buf, pl):
    if _CHECK:
        if Q > 1 and W < 8:
            raise IndexError("fastpool: 4-lane vector rows take one plane")
        _span(buf, pl, W)
        for q in range(Q):
            for r in range(R):
                _span(x, o0 + q * qs + r * rs, W)


@njit(inline="always")
def _check_wins(buf, b0, out, oo, mul, OW, s, K, d):
    if _CHECK:
        _span(out, oo, OW)
        # float32 multipliers: reciprocals then divisors (``_exact_scaled``)
        _span(mul, 0, 2 * OW if mul.itemsize == 4 else OW)
        # the last block's wide load ends s - 1 cells past its last window
        _span(buf, b0, s * OW + (K - 1) * d)


# One intrinsic per width, op, stride and (for the common 2 and 3) row or tap
# count keeps each loop body straight-line: a shared loop with these as
# variables measured 1.3-1.7x slower.


def _row_pass(kind):
    # rows of 4-7 cells are rare enough to share one loop over R (each
    # unrolled variant adds compile time at every call site)
    r8, r8_2, r8_3, r4 = _rows(8, kind), _rows(8, kind, 2), _rows(8, kind, 3), _rows(4, kind)
    q8, q8_2, q8_3 = _rows(8, kind, 0, True), _rows(8, kind, 2, True), _rows(8, kind, 3, True)
    r16_2, r16_3 = _rows(16, kind, 2), _rows(16, kind, 3)
    # 3-D windows' rows, 16 lanes: (8, 32, 8, 56, 56) k3 s2 max 1.39 -> 1.25 ms
    # on two threads (three runs in one process against the 8-lane planes),
    # k3 s1 average 3.9 -> 3.7 ms
    q16_2, q16_3 = _rows(16, kind, 2, True), _rows(16, kind, 3, True)
    # one row, one plane (1-D windows, k=1 on H): a copy into the buffer, with
    # no loop over rows per block.  max1d k3 s2 p1 on (8, 256, 3136): 1.29x ->
    # 1.12-1.15x the time of a loop over the same calls with the counts as
    # constants (paired rounds, one process)
    r16_1 = _rows(16, kind, 1)

    @njit(inline="always")
    def rows(x, o0, rs, R, qs, Q, W, buf, pl):
        _check_rows(x, o0, rs, R, qs, Q, W, buf, pl)
        if W >= 16 and R == 1 and Q == 1:
            r16_1(x, o0, rs, R, qs, Q, W, buf, pl)
        elif W >= 16 and R == 3:
            if Q == 1:
                r16_3(x, o0, rs, R, qs, Q, W, buf, pl)
            else:
                q16_3(x, o0, rs, R, qs, Q, W, buf, pl)
        elif W >= 16 and R == 2:
            if Q == 1:
                r16_2(x, o0, rs, R, qs, Q, W, buf, pl)
            else:
                q16_2(x, o0, rs, R, qs, Q, W, buf, pl)
        elif W < 8:
            r4(x, o0, rs, R, qs, Q, W, buf, pl)
        elif Q > 1:
            if R == 3:
                q8_3(x, o0, rs, R, qs, Q, W, buf, pl)
            elif R == 2:
                q8_2(x, o0, rs, R, qs, Q, W, buf, pl)
            else:
                q8(x, o0, rs, R, qs, Q, W, buf, pl)
        elif R == 3:
            r8_3(x, o0, rs, R, qs, Q, W, buf, pl)
        elif R == 2:
            r8_2(x, o0, rs, R, qs, Q, W, buf, pl)
        else:
            r8(x, o0, rs, R, qs, Q, W, buf, pl)

    return rows


def _plane_row_pass(kind):
    # rows of one plane only: _row_pass's variants for several planes would
    # be compiled in at every call site for nothing
    r16_1, r16_2, r16_3 = _rows(16, kind, 1), _rows(16, kind, 2), _rows(16, kind, 3)
    r8, r4 = _rows(8, kind), _rows(4, kind)

    @njit(inline="always")
    def rows(x, o0, rs, R, W, buf, pl):
        _check_rows(x, o0, rs, R, 0, 1, W, buf, pl)
        if W >= 16 and R == 3:
            r16_3(x, o0, rs, R, 0, 1, W, buf, pl)
        elif W >= 16 and R == 2:
            r16_2(x, o0, rs, R, 0, 1, W, buf, pl)
        elif W >= 16 and R == 1:
            r16_1(x, o0, rs, R, 0, 1, W, buf, pl)
        elif W < 8:
            r4(x, o0, rs, R, 0, 1, W, buf, pl)
        else:
            r8(x, o0, rs, R, 0, 1, W, buf, pl)

    return rows


def _run_pass(kind):
    r8, r8_3 = _rows(8, kind, runs=True), _rows(8, kind, 3, runs=True)

    @njit(inline="always")
    def runs(x, o0, rs, R, qs, Q, W, buf, pl):
        if _CHECK:
            if W <= 8 or W > 16:
                raise IndexError("fastpool: runs of rows take 9 to 16 cells")
            for q in range(Q):
                _check_rows(x, o0 + q * qs, rs, R, 0, 1, W, buf, pl + q * W)
        if R == 3:
            r8_3(x, o0, rs, R, qs, Q, W, buf, pl)
        else:
            r8(x, o0, rs, R, qs, Q, W, buf, pl)

    return runs


def _win_pass(kind):
    w8s1, w8s1_2, w8s1_3 = _wins(8, 1, kind), _wins(8, 1, kind, 2), _wins(8, 1, kind, 3)
    a8s1_2, a8s1_3 = _wins(8, 1, kind, 2, True), _wins(8, 1, kind, 3, True)
    w8s2, w8s2_2, w8s2_3 = _wins(8, 2, kind), _wins(8, 2, kind, 2), _wins(8, 2, kind, 3)
    # sums keep the plain stride-2 pass (lane2 is for max)
    a8s2_3 = _wins(8, 2, kind, 3, True) if kind == "max" else w8s2_3
    w4s1, w4s2, w4s2_3 = _wins(4, 1, kind), _wins(4, 2, kind), _wins(4, 2, kind, 3)

    @njit(inline="always")
    def wins(buf, b0, out, oo, mul, OW, s, K, d):
        _check_wins(buf, b0, out, oo, mul, OW, s, K, d)
        if OW < 8:
            if s == 1:
                w4s1(buf, b0, out, oo, mul, OW, K, d)
            elif K == 3:
                # (64, 512, 14, 14) k3 s2 max: 1.1x faster than the loop over K
                w4s2_3(buf, b0, out, oo, mul, OW, K, d)
            else:
                w4s2(buf, b0, out, oo, mul, OW, K, d)
        elif s == 1:
            if K == 3 and d == 1:
                a8s1_3(buf, b0, out, oo, mul, OW, K, d)
            elif K == 2 and d == 1:
                a8s1_2(buf, b0, out, oo, mul, OW, K, d)
            elif K == 3:
                w8s1_3(buf, b0, out, oo, mul, OW, K, d)
            elif K == 2:
                w8s1_2(buf, b0, out, oo, mul, OW, K, d)
            else:
                w8s1(buf, b0, out, oo, mul, OW, K, d)
        elif K == 3 and d == 1:
            a8s2_3(buf, b0, out, oo, mul, OW, K, d)
        elif K == 3:
            w8s2_3(buf, b0, out, oo, mul, OW, K, d)
        elif K == 2:
            w8s2_2(buf, b0, out, oo, mul, OW, K, d)
        else:
            w8s2(buf, b0, out, oo, mul, OW, K, d)

    return wins


# ``max_rows(x, o0, rs, R, qs, Q, W, buf, pl)``: ``buf[pl + w] = max over Q >= 1
# planes and R >= 1 rows x[o0 + q*qs + r*rs + w]``, ``w < W``, ``W >= 4`` (8 when
# Q > 1); ``sum_rows`` adds them in float64.
# ``max_wins(buf, b0, out, oo, mul, OW, s, K, d)``: ``out[oo + o] = max(buf[b0 + o*s + k*d]
# for k < K)``, ``OW >= 4``, ``s`` 1 or 2 (``mul`` unused); ``sum_wins`` adds the
# taps, multiplies by ``mul[o]`` and rounds to out's type.  Max takes uint16
# arrays as float16 bits (Numba has no CPU float16 type; uint16 is no pooling
# dtype): it compares them as halves and moves the bits, so NaN payloads survive.
max_rows, sum_rows = _row_pass("max"), _row_pass("sum")
# ``max_row_runs(x, o0, rs, R, qs, Q, W, buf, pl)``: Q rows of output, ``buf[pl +
# q*W + w] = max over r < R of x[o0 + q*qs + r*rs + w]``, ``8 < W <= 16``: windows
# strided on H in one call, where one call a row cost more in dispatch than in
# work ((64, 16, 14, 14) k3 s2 p1: seven 14-cell rows a plane).
max_row_runs = _run_pass("max")
# ``sum_plane_rows(x, o0, rs, R, W, buf, pl)``: ``sum_rows`` with one plane.
sum_plane_rows = _plane_row_pass("sum")
max_wins, sum_wins = _win_pass("max"), _win_pass("sum")


def _half_row_pass():
    h16_2, h16_3, h16, h8 = _half_rows(16, 2), _half_rows(16, 3), _half_rows(16), _half_rows(8)

    @njit(inline="always")
    def rows(x, o0, rs, R, W, buf, pl):
        _check_rows(x, o0, rs, R, 0, 1, W, buf, pl)
        if W < 16:
            return h8(x, o0, rs, R, W, buf, pl)
        if R == 3:
            return h16_3(x, o0, rs, R, W, buf, pl)
        if R == 2:
            return h16_2(x, o0, rs, R, W, buf, pl)
        return h16(x, o0, rs, R, W, buf, pl)

    return rows


# ``half_rows(x, o0, rs, R, W, buf, pl) -> bool``: ``max_rows`` over one plane
# for float16 bits ``x`` (uint16) into a float32 ``buf``, ``W >= 8``; True when
# the rows hold a NaN, and the buffer is then to be ignored (see
# ``_half_rows``).  ``max_wins`` from such a buffer into uint16 ``out`` rounds
# back to halves (exact) and skips the NaN test.
half_rows = _half_row_pass()


def _half32_pass():
    r3, r2, r = _half_rows32(3), _half_rows32(2), _half_rows32()
    a1_3, w1_3, w1 = _half_wins32(1, 3, True), _half_wins32(1, 3), _half_wins32(1)
    a2_3, a2_2, w2_3, w2 = _half_wins32(2, 3, True), _half_wins32(2, 2, True), _half_wins32(2, 3), _half_wins32(2)

    @njit(inline="always")
    def rows(x, o0, rs, R, W, buf, pl):
        _check_rows(x, o0, rs, R, 0, 1, W, buf, pl)
        if _CHECK and W < 32:
            raise IndexError("fastpool: rows of halves take 32+ cells")
        if R == 3:
            return r3(x, o0, rs, R, W, buf, pl)
        if R == 2:
            return r2(x, o0, rs, R, W, buf, pl)
        return r(x, o0, rs, R, W, buf, pl)

    @njit(inline="always")
    def wins(buf, b0, out, oo, OW, s, K, d):
        if _CHECK:
            _span(out, oo, OW)
            _span(buf, b0, s * OW + (K - 1) * d)
            if OW < (32 if s == 1 else 16) or s > 2:
                raise IndexError("fastpool: windows of halves take stride 1 and 32+ of them, or stride 2 and 16+")
        if s == 1:
            if K == 3 and d == 1:
                a1_3(buf, b0, out, oo, OW, K, d)
            elif K == 3:
                w1_3(buf, b0, out, oo, OW, K, d)
            else:
                w1(buf, b0, out, oo, OW, K, d)
        elif K == 3 and d == 1:
            a2_3(buf, b0, out, oo, OW, K, d)
        elif K == 2 and d == 1:
            a2_2(buf, b0, out, oo, OW, K, d)
        elif K == 3:
            w2_3(buf, b0, out, oo, OW, K, d)
        else:
            w2(buf, b0, out, oo, OW, K, d)

    return rows, wins


# ``half_rows32(x, o0, rs, R, W, buf, pl) -> bool``: ``half_rows`` into a uint16
# ``buf`` (float16 bits), ``W >= 32``; ``half_wins32(buf, b0, out, oo, OW, s, K,
# d)``: ``max_wins`` from such a buffer, ``s`` 1 (``OW >= 32``) or 2 (``OW >=
# 16``).  Only for CPUs with AVX512-FP16 (``has_avx512fp16``).
half_rows32, half_wins32 = _half32_pass()


def _flat_pass(kind):
    f8, f8_3, f4 = _flat_wins(8, kind), _flat_wins(8, kind, 3), _flat_wins(4, kind)
    c8_3 = _flat_wins(8, kind, 3, 1, True)

    @njit(inline="always")
    def wins(buf, b0, out, oo, mul, n, K, col, W, pL):
        if _CHECK:
            _span(out, oo, n)
            _span(col, 0, n)
            _span(buf, b0, n + K - 1)
            if kind == "sum":
                _span(mul, 0, n)
        if n < 8:
            f4(buf, b0, out, oo, mul, n, K, col, W, pL)
        elif K == 3 and pL == 1:
            c8_3(buf, b0, out, oo, mul, n, K, col, W, pL)
        elif K == 3:
            f8_3(buf, b0, out, oo, mul, n, K, col, W, pL)
        else:
            f8(buf, b0, out, oo, mul, n, K, col, W, pL)

    if kind == "sum":
        return wins
    # stride 2, 3 taps (_core.cf_flat_args); the sums have no call site for them
    g8_3, g4_3, h8_3 = _flat_wins(8, kind, 3, 2), _flat_wins(4, kind, 3, 2), _flat_wins(8, kind, 3, 2, True)

    @njit(inline="always")
    def strided(buf, b0, out, oo, mul, n, K, col, W, pL, s):
        if s == 1:
            wins(buf, b0, out, oo, mul, n, K, col, W, pL)
            return
        if _CHECK:
            _span(out, oo, n)
            _span(col, 0, n)
            # the wide loads of a block read one cell past its last tap
            _span(buf, b0, 2 * n + K - 1)
            if s != 2 or K != 3:
                raise IndexError("fastpool: flat windows of stride 2 take 3 taps")
        if n >= 8 and pL == 1:
            h8_3(buf, b0, out, oo, mul, n, K, col, W, pL)
        elif n >= 8:
            g8_3(buf, b0, out, oo, mul, n, K, col, W, pL)
        else:
            g4_3(buf, b0, out, oo, mul, n, K, col, W, pL)

    return strided


# ``max_flat_wins(buf, b0, out, oo, mul, n, K, col, W, pL, s)``: the windows of a
# run of whole rows laid end to end in ``buf`` (see ``_flat_wins``), ``n >= 4``
# (``mul`` unused), stride ``s`` 1 or 2 (then K = 3); ``sum_flat_wins(buf, b0,
# out, oo, mul, n, K, col, W, pL)``, stride 1, adds the taps, multiplies by
# ``mul[o]`` and rounds to out's type.
max_flat_wins, sum_flat_wins = _flat_pass("max"), _flat_pass("sum")


# Rows this short take one vector of this many lanes (``_short``)
SHORT_LANES = 16


def _short_pass(kind):
    v11, v12, v13, v21, v22, v23 = (_short(kind, s, k, SHORT_LANES) for s in (1, 2) for k in (1, 2, 3))
    # 3-tap windows over 2 or 3 rows, the loop over rows unrolled: (64, 512,
    # 14, 14) k3 s2 p1 max 1.77 -> 1.66 ms on two threads (same process)
    f13_2, f13_3, f23_2, f23_3 = (_short(kind, s, 3, SHORT_LANES, r) for s in (1, 2) for r in (2, 3))

    @njit(inline="always")
    def short(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, s, K, pad):
        if _CHECK:
            _span(out, oo, OW)
            if kind == "sum":
                _span(mul, 0, 2 * OW if mul.itemsize == 4 else OW)
            for q in range(Q):
                for r in range(R):
                    _span(x, o0 + q * qs + r * rs, W)
            if s * (OW - 1) + K > SHORT_LANES or pl >= SHORT_LANES:
                raise IndexError("fastpool: a short row's windows past its vector")
        if K == 3 and Q == 1 and (R == 3 or R == 2):
            if s == 1:
                if R == 3:
                    f13_3(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)
                else:
                    f13_2(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)
            elif R == 3:
                f23_3(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)
            else:
                f23_2(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)
        elif s == 1:
            if K == 3:
                v13(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)
            elif K == 2:
                v12(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)
            else:
                v11(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)
        elif K == 3:
            v23(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)
        elif K == 2:
            v22(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)
        else:
            v21(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, pad)

    return short


# ``max_short(x, o0, rs, R, qs, Q, W, pl, out, oo, mul, OW, s, K, pad)``: a whole
# output row of windows of stride ``s`` (1 or 2) and ``K`` (1-3) adjacent taps
# over a short row (see ``_short``; ``mul`` unused, ``pad`` the max identity);
# ``sum_short`` adds in ``pad``'s type (a zero of it).
max_short, sum_short = _short_pass("max"), _short_pass("sum")


def _runs_pass(R, nan, flag=False):
    rows = _rows(8, "max", R, nan=nan, flag=flag)
    if not _CHECK:
        # the intrinsic itself, with no inlined wrapper: the wide kernel calls
        # these a row at a time from an inlined plane function, where each
        # inlined wrapper call took a reference to its arrays and dropped it
        # (NRT_incref / NRT_decref, atomic): 40% of (8, 256, 56, 56) k13's time
        # on one thread, and k5 / k9 / k13 0.74 / 0.75 / 0.83x the time without
        return rows

    @njit(inline="always")
    def runs(x, o0, rs, R_, qs, Q, n, buf, pl):
        if R_ != R or Q != 1:
            raise IndexError("fastpool: a pair or triple pass called with other counts")
        _check_rows(x, o0, rs, R, 0, 1, n, buf, pl)
        return rows(x, o0, rs, R, 0, 1, n, buf, pl)

    return runs


# ``pair_max(x, o0, rs, 2, 0, 1, n, buf, pl)``: ``buf[pl + i] = max(x[o0 + i],
# x[o0 + i + rs])`` for ``i < n``, ``n >= 8`` (``rs = 0`` copies);
# ``triple_max(x, o0, rs, 3, 0, 1, n, buf, pl)`` the same over ``x[o0 + i +
# r*rs]``, ``r < 3``, in that order (``max_rows``' arguments, the counts fixed):
# the passes the wide-window kernel is made of; ``*_nonan`` for data with no
# NaN (see ``_vmax``).
pair_max, pair_max_nonan = _runs_pass(2, True), _runs_pass(2, False)
triple_max, triple_max_nonan = _runs_pass(3, True), _runs_pass(3, False)
# ``*_seen``: the same passes returning whether a cell they read is NaN (the
# wide kernel's first pass, which reads every row its windows do).
pair_max_seen, triple_max_seen = _runs_pass(2, True, True), _runs_pass(3, True, True)
pair_max_nonan_seen, triple_max_nonan_seen = _runs_pass(2, False, True), _runs_pass(3, False, True)


def _column_runs(nan, sizes):
    """van Herk / Gil-Werman running maxima down the rows of a plane: ``out[oo +
    t*ors + w] = max over h < K of x[xo + (t + h - ph)*WC + w]`` for ``t < OH``,
    ``w < WC`` (``WC >= 8``), rows outside ``[0, H)`` reading as ``lowest``;
    returns whether it read a NaN (see ``_rows``' ``flag``).  The padded rows
    ``[0, OH + K - 1)`` are cut in runs of K; a forward scan keeps each run's
    prefix maxima in ``P`` (rows of WC) and a backward scan carries its suffix
    maxima and takes ``max(suffix[t], prefix[t + K - 1])``, so a window costs
    three loads a cell whatever K is (the sparse table's passes take 2 or 3 a
    level).  A block of up to 8 vectors of 8 lanes (``sizes``) runs down the
    whole plane with its maxima in registers.  Ranges combine in order (the
    suffix scan puts the earlier cell first), so the result is the sequential
    rule's bit for bit; ``nan``: see ``_vmax``."""

    @intrinsic
    def runs(typingctx, x, xo, H, WC, ph, K, OH, lowest, P, out, oo, ors):
        def codegen(context, builder, sig, args):
            xty = sig.args[0]
            dt = xty.dtype
            xp = _data(context, builder, xty, args[0])
            pp = _data(context, builder, sig.args[8], args[8])
            op = _data(context, builder, sig.args[9], args[9])
            x_o, n_h, wc, p_h, k, oh, o_o, o_rs = (_i64(context, builder, sig.args[i], args[i])
                                                   for i in (1, 2, 3, 4, 5, 6, 10, 11))
            xe = context.get_data_type(dt)
            al = context.get_abi_sizeof(xe)
            low1 = context.cast(builder, args[7], sig.args[7], dt)
            zero, one = ir.Constant(_I64, 0), ir.Constant(_I64, 1)
            hp = builder.sub(builder.add(oh, k), one)
            comb = lambda a, b: _vmax(builder, a, b, dt, nan)  # noqa: E731
            check = isinstance(dt, types.Float) or dt == types.uint16
            L = 8
            width = L * sizes[0]
            lows = builder.bitcast(cgutils.alloca_once(builder, ir.ArrayType(xe, width)), xe.as_pointer())
            with cgutils.for_range(builder, ir.Constant(_I64, width)) as loop:
                builder.store(low1, builder.gep(lows, [loop.index]))
            n_runs = builder.add(builder.sdiv(builder.sub(hp, one), k), one)
            # runs q_in, q_in + 1, ... lie inside the plane while qK + K <= ph + H
            q_in = builder.sdiv(builder.add(p_h, builder.sub(k, one)), k)
            n_in = builder.sub(builder.sdiv(builder.add(p_h, n_h), k), q_in)
            n_pairs = builder.sdiv(builder.select(builder.icmp_signed("<", n_in, zero), zero, n_in),
                                   ir.Constant(_I64, 2))
            nans = cgutils.alloca_once_value(builder, ir.Constant(ir.VectorType(ir.IntType(1), L), [0] * L))
            xv = ir.VectorType(xe, L)
            low = _splat(builder, low1, L)

            def emit(U):
                carry = [cgutils.alloca_once(builder, xv) for _ in range(2 * U)]

                def value(t, w, note, edge):
                    # rows outside the plane (edge runs only) read a row of
                    # lowest (a select of addresses: selects of vectors became
                    # branches)
                    h = builder.sub(t, p_h)
                    base = builder.gep(xp, [builder.add(builder.add(x_o, builder.mul(h, wc)), w)])
                    if edge:
                        base = builder.select(builder.icmp_unsigned("<", h, n_h), base, lows)
                    vs = []
                    for u in range(U):
                        v = _load(builder, base, ir.Constant(_I64, u * L), xv, al)
                        if note:
                            builder.store(builder.or_(builder.load(nans), _nan_lanes(builder, v, dt)), nans)
                        vs.append(v)
                    return vs

                def put(vs, base, at):
                    for u, v in enumerate(vs):
                        _store(builder, v, base, builder.add(at, ir.Constant(_I64, u * L)), al)

                def run(r0s, w, fwd, n=None, edge=True):
                    # runs of K rows (fewer at the end) from each r0, side by side
                    # (the maxima are chains a row long: one run at a time waited
                    # on them); forward, the prefix maxima into P; backward, the
                    # suffix maxima, each row's window (t < OH) into out
                    if n is None:
                        n = builder.select(builder.icmp_signed("<", builder.sub(hp, r0s[0]), k),
                                           builder.sub(hp, r0s[0]), k)
                    for u in range(U * len(r0s)):
                        builder.store(low, carry[u])
                    with cgutils.for_range(builder, n) as loop:
                        for g, r0 in enumerate(r0s):
                            cy = carry[g * U:(g + 1) * U]
                            if fwd:
                                t = builder.add(r0, loop.index)
                                cs = [comb(builder.load(cy[u]), v) for u, v in enumerate(value(t, w, check, edge))]
                                put(cs, pp, builder.add(builder.mul(t, wc), w))
                            else:
                                t = builder.sub(builder.add(r0, builder.sub(n, one)), loop.index)
                                cs = [comb(v, builder.load(cy[u])) for u, v in enumerate(value(t, w, False, edge))]
                                with builder.if_then(builder.icmp_signed("<", t, oh)):
                                    # the run's first row is its whole window
                                    pr = builder.select(builder.icmp_signed("==", t, r0), lows,
                                                        builder.gep(pp, [builder.add(builder.mul(builder.sub(
                                                            builder.add(t, k), one), wc), w)]))
                                    put([comb(c, _load(builder, pr, ir.Constant(_I64, u * L), xv, al))
                                         for u, c in enumerate(cs)], op,
                                        builder.add(builder.add(o_o, builder.mul(t, o_rs)), w))
                            for u, c in enumerate(cs):
                                builder.store(c, cy[u])

                def block(w):
                    # with fewer than 4 vectors, runs inside the plane two at a
                    # time and the others (the edge ones) one at a time; the
                    # backward scan reads only P, so any order of runs serves
                    np_ = n_pairs if U < 4 else zero
                    both = builder.add(np_, np_)
                    for fwd in (True, False):
                        with cgutils.for_range(builder, builder.sub(n_runs, both)) as loop:
                            q = loop.index
                            q = builder.select(builder.icmp_signed("<", q, q_in), q, builder.add(q, both))
                            run([builder.mul(q, k)], w, fwd)
                        if U < 4:
                            with cgutils.for_range(builder, n_pairs) as loop:
                                r0 = builder.mul(builder.add(q_in, builder.add(loop.index, loop.index)), k)
                                run([r0, builder.add(r0, k)], w, fwd, k, False)

                return block

            # blocks of up to 8 vectors side by side (one vector a row spent
            # more on the row's bookkeeping than on its load, and waited on its
            # chain): 8 while they fit, the rest in one block of each smaller
            # size that fits, then a last vector ending at WC
            w = cgutils.alloca_once_value(builder, zero)
            for U in sizes:
                span = ir.Constant(_I64, L * U)
                if U == sizes[0]:
                    with cgutils.for_range(builder, builder.sdiv(wc, span)) as loop:
                        emit(U)(builder.mul(loop.index, span))
                    builder.store(builder.mul(builder.sdiv(wc, span), span), w)
                    continue
                with builder.if_then(builder.icmp_signed("<=", builder.add(builder.load(w), span), wc)):
                    emit(U)(builder.load(w))
                    builder.store(builder.add(builder.load(w), span), w)
            with builder.if_then(builder.icmp_signed("<", builder.load(w), wc)):
                emit(1)(builder.sub(wc, ir.Constant(_I64, L)))
            if not check:
                return ir.Constant(ir.IntType(1), 0)
            return _any_lane(builder, builder.load(nans))

        return types.boolean(x, xo, H, WC, ph, K, OH, lowest, P, out, oo, ors), codegen

    return runs


def _column_runs_fn(nan):
    # every block size from 8 vectors down: blocks of 4, 2 and 1 took 1.2x the
    # time of one of 7 on 56-cell rows (k13 s1); the sizes 5-7 add about 0.6 s
    # to a wide kernel's compile
    cr = _column_runs(nan, (8, 7, 6, 5, 4, 3, 2, 1))
    if not _CHECK:
        # the intrinsic itself: an inlined wrapper takes references (see _runs_pass)
        return cr

    @njit(inline="always")
    def column_runs(x, xo, H, WC, ph, K, OH, lowest, P, out, oo, ors):
        if _CHECK:
            _span(x, xo, H * WC)
            _span(P, 0, (OH + K - 1) * WC)
            _span(out, oo, (OH - 1) * ors + WC)
            if WC < 8 or K < 1 or not 0 <= ph < K:
                raise IndexError("fastpool: column runs with WC < 8 or padding past the window")
        return cr(x, xo, H, WC, ph, K, OH, lowest, P, out, oo, ors)

    return column_runs


# ``column_max(x, xo, H, WC, ph, K, OH, lowest, P, out, oo, ors) -> bool``: the
# max of K rows down a plane, and whether it read a NaN (see ``_column_runs``);
# ``*_nonan``: with the one-instruction max (see ``_vmax``).
column_max, column_max_nonan = _column_runs_fn(True), _column_runs_fn(False)


@njit(inline="always")
def avg_quads(x, a, rs, out, oo, mul, OW):
    """2x2 stride-2 averages of rows ``x[a:]`` and ``x[a + rs:]`` (see ``_quads``), ``OW >= 4``."""
    if _CHECK:
        _span(out, oo, OW)
        _span(mul, 0, OW)
        _span(x, a, 2 * OW)
        _span(x, a + rs, 2 * OW)
    if OW < 8:
        _QUADS4(x, a, rs, out, oo, mul, OW)
    else:
        _QUADS8(x, a, rs, out, oo, mul, OW)


@njit(inline="always")
def max_quads(x, a, rs, out, oo, OW):
    """2x2 stride-2 maxima of rows ``x[a:]`` and ``x[a + rs:]`` (see ``_quads``), ``OW >= 4``."""
    if _CHECK:
        _span(out, oo, OW)
        _span(x, a, 2 * OW)
        _span(x, a + rs, 2 * OW)
    if OW < 8:
        _MAXQUADS4(x, a, rs, out, oo, out, OW)
    else:
        _MAXQUADS8(x, a, rs, out, oo, out, OW)


@njit(inline="always")
def prefetch(x, o0, n):
    """Ask for ``x[o0:o0 + n]`` in L2 (see ``_prefetch``)."""
    if _CHECK:
        _span(x, o0, n)
    _PREFETCH(x, o0, n)


@njit(inline="always")
def stream(src, s0, dst, d0, n):
    """``dst[d0:d0 + n] = src[s0:s0 + n]`` past the caches (see ``_stream``)."""
    if _CHECK:
        _span(src, s0, n)
        _span(dst, d0, n)
    _STREAM(src, s0, dst, d0, n)


_TILES1, _TILES2, _TILES = _tiles(1), _tiles(2), _tiles()


@njit(inline="always")
def sum_tiles(buf, b0, out, oo, mul, OW, K):
    """Windows of ``K`` cells end to end along a float64 row buffer (see
    ``_tiles``), ``OW >= 4``, ``K`` a multiple of 4."""
    if _CHECK:
        _span(out, oo, OW)
        _span(mul, 0, OW)
        _span(buf, b0, OW * K)
        if OW < 4 or K < 4 or K % 4:
            raise IndexError("fastpool: tiles take 4+ windows of a multiple of 4 cells")
    if K == 4:
        _TILES1(buf, b0, out, oo, mul, OW, K)
    elif K == 8:
        _TILES2(buf, b0, out, oo, mul, OW, K)
    else:
        _TILES(buf, b0, out, oo, mul, OW, K)


_PLANE_SUM8 = _plane_sum(8)


# planes a block of the eight-plane reductions (see _plane_sums8)
_PLANE_BLOCK = 8 if has_avx512() else 2
_PLANE_SUMS8 = _plane_sums8(_PLANE_BLOCK)


@njit(inline="always")
def plane_sums8(x, o0, S, out, r0, div):
    """``out[r0 + p] = plane_sum(x, o0 + p*S, S) / div`` for ``p < 8`` (see ``_plane_sums8``)."""
    if _CHECK:
        _span(x, o0, 8 * S)
        _span(out, r0, 8)
    _PLANE_SUMS8(x, o0, S, out, r0, div)


_PLANE_MAXES8 = _plane_maxes8(_PLANE_BLOCK)


@njit(inline="always")
def plane_maxes8(x, o0, S, out, r0):
    """``out[r0 + p] = max(x[o0 + p*S:o0 + (p + 1)*S])``, ``p < 8``, ``S >= 16``
    (NaN wins; see ``_plane_maxes8``); out of x's type."""
    if _CHECK:
        _span(x, o0, 8 * S)
        _span(out, r0, 8)
        if S < 16:
            raise IndexError("fastpool: plane_maxes8 needs planes of 16 cells or more")
    _PLANE_MAXES8(x, o0, S, out, r0)


@njit(inline="always")
def plane_sum(x, o0, S):
    """``sum(x[o0:o0 + S])`` in float64, in a fixed order (see ``_plane_sum``)."""
    if _CHECK:
        _span(x, o0, S)
    return _PLANE_SUM8(x, o0, S)


# ----------------------------------------------------------------------------- argmax rows
#
# Max with indices, channels-first, as ``_cpu.cf_argmax_forward``'s rule: a
# window's rows first (per column the value and the flat start of its row,
# int32 lanes beside the values), then its taps across the row buffer, the
# value, row and column of each lane carried in registers through the taps.


def _beats(builder, v, r, b, rb, dtype):
    """Taps pass, ``_cpu._col_wins`` lane by lane: candidate ``(v, r)`` beats
    ``(b, rb)`` if NaN where ``b`` is not or sits on an earlier-or-equal row,
    or if larger, or equal on an earlier row.  (The ordered compares are false
    for NaN operands, which drops the scalar rule's explicit NaN terms.)"""
    earlier = builder.icmp_signed("<", r, rb)
    gt = _takes(builder, b, v, dtype, nan=False)
    if isinstance(dtype, types.Float):
        eq = builder.fcmp_ordered("==", v, b)
        nan = builder.and_(builder.fcmp_unordered("uno", v, v),
                           builder.or_(builder.fcmp_ordered("ord", b, b), builder.icmp_signed(">=", r, rb)))
        return builder.or_(builder.or_(gt, builder.and_(eq, earlier)), nan)
    return builder.or_(gt, builder.and_(builder.icmp_signed("==", v, b), earlier))


def _pack(builder, *vals):
    st = ir.LiteralStructType([v.type for v in vals])
    agg = ir.Constant(st, ir.Undefined)
    for i, v in enumerate(vals):
        agg = builder.insert_value(agg, v, i)
    return agg


def _unpack(builder, agg, n):
    return [builder.extract_value(agg, i) for i in range(n)]


def _arg_rows(L, fixed=0, planes=False):
    """A whole row: ``bv[pl + w]`` the first max (or last NaN) over ``q < Q, r < R``
    (``q`` outer) of ``x[o0 + q*qs + r*rs + w]`` and ``br[pl + w]`` its
    ``rid0 + q*qs + r*rs`` (int32), ``w < W``, ``W >= L``; Q is 1 unless ``planes``."""

    @intrinsic
    def rows(typingctx, x, o0, rs, R, qs, Q, W, bv, br, pl, rid0):
        def codegen(context, builder, sig, args):
            xty = sig.args[0]
            xp, vp, rp = (_data(context, builder, sig.args[i], args[i]) for i in (0, 7, 8))
            o_0, r_s, n_r, q_s, n_q, n_w, p_l, r_0 = (_i64(context, builder, sig.args[i], args[i])
                                                      for i in (1, 2, 3, 4, 5, 6, 9, 10))
            xe = context.get_data_type(xty.dtype)
            xv, xal = ir.VectorType(xe, L), context.get_abi_sizeof(xe)

            def comb(acc, new):
                (a, ar), (v, vr) = _unpack(builder, acc, 2), _unpack(builder, new, 2)
                take = _takes(builder, a, v, xty.dtype)
                return _pack(builder, builder.select(take, v, a), builder.select(take, vr, ar))

            def block(w):
                def plane(q):
                    def row(r):
                        off = builder.add(builder.mul(q, q_s), builder.mul(r, r_s))
                        v = _load(builder, xp, builder.add(builder.add(o_0, w), off), xv, xal)
                        return _pack(builder, v, _splat(builder, builder.trunc(builder.add(r_0, off), _I32), L))

                    return _fold(builder, row(ir.Constant(_I64, 0)), n_r, fixed, row, comb)

                acc = plane(ir.Constant(_I64, 0))
                if planes:
                    acc = _fold(builder, acc, n_q, 0, plane, comb)
                v, r = _unpack(builder, acc, 2)
                at = builder.add(p_l, w)
                _store(builder, v, vp, at, xal)
                _store(builder, r, rp, at, 4)

            _blocks(builder, n_w, L, block)
            return context.get_dummy_value()

        return types.void(x, o0, rs, R, qs, Q, W, bv, br, pl, rid0), codegen

    return rows


def _arg_wins(L, s, fixed=0):
    """A whole row of outputs ``o < OW`` (``OW >= L``): the winner by ``_beats``
    of taps ``k < K`` (in order) at ``b0 + o*s + k*d`` of ``bv``/``br``;
    ``out[oo + o]`` its value, ``idx[oo + o]`` its row start plus its column
    ``o*s + k*d + c0`` (int64)."""

    @intrinsic
    def wins(typingctx, bv, br, b0, out, idx, oo, OW, K, d, c0):
        def codegen(context, builder, sig, args):
            vty, oty = sig.args[0], sig.args[3]
            vp, rp, op, ip = (_data(context, builder, sig.args[i], args[i]) for i in (0, 1, 3, 4))
            b_0, o_o, n_o, n_k, dil, c_0 = (_i64(context, builder, sig.args[i], args[i]) for i in (2, 5, 6, 7, 8, 9))
            ve = context.get_data_type(vty.dtype)
            val = context.get_abi_sizeof(ve)
            oal = context.get_abi_sizeof(context.get_data_type(oty.dtype))
            i32v = ir.VectorType(_I32, L)
            # lane j's cell: j*s on from the block's first (the wide loads' pick
            # and the columns' step)
            pick = ir.Constant(i32v, [j * s for j in range(L)])
            stride = ir.Constant(_I64, s)

            def block(o):
                first = builder.mul(o, stride)

                def tap(k):
                    at = builder.add(first, builder.mul(k, dil))

                    def cells(p, e, al):
                        if s == 1:
                            return _load(builder, p, builder.add(b_0, at), ir.VectorType(e, L), al)
                        w = _load(builder, p, builder.add(b_0, at), ir.VectorType(e, L * s), al)
                        return builder.shuffle_vector(w, ir.Constant(w.type, ir.Undefined), pick)

                    col = builder.add(_splat(builder, builder.trunc(builder.add(at, c_0), _I32), L), pick)
                    return _pack(builder, cells(vp, ve, val), cells(rp, _I32, 4), col)

                def comb(acc, new):
                    (b, rb, cb), (v, r, c) = _unpack(builder, acc, 3), _unpack(builder, new, 3)
                    win = _beats(builder, v, r, b, rb, vty.dtype)
                    return _pack(builder, *(builder.select(win, n, a) for n, a in ((v, b), (r, rb), (c, cb))))

                v, r, c = _unpack(builder, _fold(builder, tap(ir.Constant(_I64, 0)), n_k, fixed, tap, comb), 3)
                at = builder.add(o_o, o)
                _store(builder, v, op, at, oal)
                i64v = ir.VectorType(_I64, L)
                _store(builder, builder.add(builder.sext(r, i64v), builder.sext(c, i64v)), ip, at, 8)

            _blocks(builder, n_o, L, block)
            return context.get_dummy_value()

        return types.void(bv, br, b0, out, idx, oo, OW, K, d, c0), codegen

    return wins


_AR8, _AR8_3, _AQ8, _AR4 = _arg_rows(8), _arg_rows(8, 3), _arg_rows(8, 0, True), _arg_rows(4)
_AW8S1, _AW8S1_3, _AW8S2, _AW8S2_3 = _arg_wins(8, 1), _arg_wins(8, 1, 3), _arg_wins(8, 2), _arg_wins(8, 2, 3)
_AW4S1, _AW4S2 = _arg_wins(4, 1), _arg_wins(4, 2)


@njit(inline="always")
def argmax_rows(x, o0, rs, R, qs, Q, W, bv, br, pl, rid0):
    """``bv[pl + w]``, ``br[pl + w]``: the first max (a NaN: the last NaN) over
    ``q < Q, r < R`` (``q`` outer) of ``x[o0 + q*qs + r*rs + w]`` and its
    ``rid0 + q*qs + r*rs`` (int32 ``br``), ``w < W``, ``W >= 4`` (8 when Q > 1)."""
    if _CHECK:
        _check_rows(x, o0, rs, R, qs, Q, W, bv, pl)
        _span(br, pl, W)
    if W < 8:
        _AR4(x, o0, rs, R, qs, Q, W, bv, br, pl, rid0)
    elif Q > 1:
        _AQ8(x, o0, rs, R, qs, Q, W, bv, br, pl, rid0)
    elif R == 3:
        _AR8_3(x, o0, rs, R, qs, Q, W, bv, br, pl, rid0)
    else:
        _AR8(x, o0, rs, R, qs, Q, W, bv, br, pl, rid0)


@njit(inline="always")
def argmax_wins(bv, br, b0, out, idx, oo, OW, s, K, d, c0):
    """For ``o < OW`` (``OW >= 4``, ``s`` 1 or 2): of the taps ``k < K`` at ``b0 +
    o*s + k*d`` of ``argmax_rows``' buffers, the first max by row, then column
    (a NaN: the last by row, then column) into ``out[oo + o]``, and its row start
    plus ``o*s + k*d + c0`` into ``idx[oo + o]``."""
    if _CHECK:
        _span(out, oo, OW)
        _span(idx, oo, OW)
        _span(bv, b0, s * OW + (K - 1) * d)
        _span(br, b0, s * OW + (K - 1) * d)
    if OW < 8:
        if s == 1:
            _AW4S1(bv, br, b0, out, idx, oo, OW, K, d, c0)
        else:
            _AW4S2(bv, br, b0, out, idx, oo, OW, K, d, c0)
    elif s == 1:
        if K == 3:
            _AW8S1_3(bv, br, b0, out, idx, oo, OW, K, d, c0)
        else:
            _AW8S1(bv, br, b0, out, idx, oo, OW, K, d, c0)
    elif K == 3:
        _AW8S2_3(bv, br, b0, out, idx, oo, OW, K, d, c0)
    else:
        _AW8S2(bv, br, b0, out, idx, oo, OW, K, d, c0)
