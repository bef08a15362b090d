"""Which algorithm runs a convolution pass, chosen once per (geometry, dtype, pass).

Each pass (forward, input gradient, weight and bias gradient) has an ordered registry
of algorithms (algorithms/__init__.py).  An algorithm answers two questions about a
call (a Query): ``supports(q)``, None or the one-line reason it cannot run it, and
``declines(q)``, None or the reason a later algorithm suits it better (a heuristic the
default order follows).  ``select`` takes the first algorithm that neither refuses nor
declines, asks it for a Plan (its tiles, blocks and thread split) and caches the plan;
``force`` (a ContextVar, so per thread and task) makes the named algorithm run whatever
its heuristics say, and raises ValueError with its reason when it cannot run the call.
``explain`` gives the choice and every other algorithm's reason.  With
FASTCONV_VERBOSE=1 in the environment (read at import), every pass prints one line to
stderr: the pass, the geometry, the algorithm and ISA that ran and the time taken.
"""
import contextlib
import contextvars
import dataclasses
import os
import sys
from typing import NamedTuple

from ... import _ext
from ... import tuning as _tuning
from .geometry import ConvGeometry

__all__ = ["FORWARD", "GRAD_INPUT", "GRAD_WEIGHT", "PASSES", "Query", "Plan", "Algorithm",
           "select", "explain", "force", "Explanation", "VERBOSE"]

FORWARD, GRAD_INPUT, GRAD_WEIGHT = "forward", "grad_input", "grad_weight"
PASSES = (FORWARD, GRAD_INPUT, GRAD_WEIGHT)
#: The forward's relu argument for ReLU6 (min(max(y, 0), 6)); False/True: none/ReLU.
#: Algorithms with ``relu6`` apply it in their output pass, run.py clamps after the
#: others' ReLU.
RELU6 = _ext.conv2d.RELU6
VERBOSE = os.environ.get("FASTCONV_VERBOSE", "") not in ("", "0")

_NOT_FINITE = "the weight is not finite (NaN/inf weights take kernels without shortcuts)"


class Query(NamedTuple):
    """One pass of one call, as the algorithms see it."""
    g: ConvGeometry
    dtype: object
    pass_: str
    finite: bool     # the weight holds no NaN or infinity (forward, input gradient)
    tile: object     # the Winograd tile side the caller asks for (None: by size)
    isa: str
    tuning: _tuning.Tuning
    packed: bool = False   # the forward's weight is kept packed between calls (Prepared)


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """What runs one pass: the algorithm, the geometry its kernels see (the call's, or
    the one it is rewritten into), and the algorithm's parameters."""
    pass_: str
    algorithm: "Algorithm"
    g: ConvGeometry
    dtype: object
    run_g: ConvGeometry = None   # the geometry the kernels run on (None: g)
    tile: object = None          # Winograd tile side / pixel-row or wide tile
    half: bool = False           # the pixel-row kernels' half-width tile
    block: int = 0               # Winograd tiles per work item or block
    n_per: int = 0               # images per partial sum of the bias (and weight) gradient
    split: int = 0               # images per partial weight gradient (wide, Winograd)
    inner: "Plan" = None         # the plan of the rewritten call (dense as 1x1)
    isa: str = ""
    # a channels_first call run on the channels_last kernels, through transposed
    # copies of its arrays: the channels_last twin of g (via_last; depthwise on small
    # planes)
    last: ConvGeometry = None

    @property
    def name(self):
        return self.algorithm.name

    def describe(self):
        """e.g. 'winograd_f4 (avx512), tile 4, blocks of 36 tiles'."""
        parts = [f"{self.name} ({self.isa})"]
        parts += self.algorithm.details(self)
        if self.inner is not None and self.algorithm.rewrites:
            parts.append(f"then {self.inner.describe()}")
        return ", ".join(parts)


class Algorithm:
    """One way to compute some of the passes.  Subclasses set ``name``, ``passes`` and
    ``shortcuts`` (the passes on which the kernels assume a finite weight) and define
    _supports/declines/plan and the run methods of their passes."""
    name = ""
    passes = ()
    shortcuts = ()
    rewrites = False     # runs the call as another convolution (see Plan.inner)
    relayouts = False    # runs a channels_first call as its channels_last twin (Plan.last)
    relu6 = False        # forward takes relu=RELU6: ReLU6 in its output pass (run.py)

    def supports(self, q):
        """None, or the one-line reason this algorithm cannot run q."""
        if q.pass_ not in self.passes:
            return f"has no {q.pass_} pass"
        if not q.finite and q.pass_ in self.shortcuts:
            return _NOT_FINITE
        return self._supports(q)

    def _supports(self, q):
        return None

    def declines(self, q):
        """None, or why a later algorithm suits q better (the default order only)."""
        return None

    def plan(self, q):
        return Plan(q.pass_, self, q.g, q.dtype, isa=q.isa)

    def details(self, plan):
        return []

    def pack(self, plan, w):
        """The forward's weight w (C_out, C_in/groups, kh, kw) as its kernels read it,
        which forward(..., packed=) then takes in its place (kept between inference
        calls: prepared.py); None where the kernels read w as it is."""
        return None

    def __repr__(self):
        return f"<conv algorithm {self.name}>"


_REGISTRY = {}


def register(pass_registry):
    """Install the ordered {pass: [algorithms]} (algorithms/__init__.py does, once)."""
    _REGISTRY.update(pass_registry)


def registry(pass_):
    _check_pass(pass_)
    return _REGISTRY[pass_]


def algorithm_names(pass_=None):
    """The algorithms' names, in their order (of one pass, or of all)."""
    names = []
    for p in PASSES if pass_ is None else (pass_,):
        names += [a.name for a in registry(p) if a.name not in names]
    return names


def _check_pass(pass_):
    if pass_ not in PASSES:
        raise ValueError(f"pass_ must be one of {PASSES}, got {pass_!r}")


# -- forcing -----------------------------------------------------------------------------
_forced = contextvars.ContextVar("fastconv_forced_conv_algorithm", default=None)


@contextlib.contextmanager
def force(name=None, *, forward=None, grad_input=None, grad_weight=None):
    """Context manager: the named algorithm runs every pass it has (``name``), or the
    named one per pass (keywords, which take precedence); other passes choose as usual.
    A pass whose forced algorithm cannot run the call raises ValueError with the
    reason.  Unknown names raise ValueError at once."""
    wanted = {}
    for pass_, value in ((FORWARD, forward), (GRAD_INPUT, grad_input),
                         (GRAD_WEIGHT, grad_weight)):
        names = [a.name for a in registry(pass_)]
        if value is not None:
            if value not in names:
                raise ValueError(f"{pass_} must name one of the {pass_} algorithms "
                                 f"{names}, got {value!r}")
            wanted[pass_] = value
        elif name is not None and name in names:
            wanted[pass_] = name
    if name is not None and name not in algorithm_names():
        raise ValueError(f"name must be one of the conv algorithms {algorithm_names()}, "
                         f"got {name!r}")
    if not wanted:
        raise TypeError("force_conv_algorithm needs an algorithm name or a per-pass "
                        "keyword (forward=, grad_input=, grad_weight=)")
    token = _forced.set(tuple(sorted(wanted.items())))
    try:
        yield
    finally:
        _forced.reset(token)


def _forced_for(forced, pass_):
    for p, name in forced or ():
        if p == pass_:
            return name
    return None


# -- selection ---------------------------------------------------------------------------
_CACHE = {}
_CACHE_SIZE = 1024


def select(g, dtype, pass_, finite=True, tile=None, forced=True, packed=False):
    """The Plan of pass_ for geometry g and dtype (cached).  finite: whether the weight
    is finite (forward and input gradient); tile: the Winograd tile the caller asks
    for; forced=False ignores force() (the inner call of a rewrite); packed: the
    weight's packed forms are kept between calls (an inference forward's Prepared)."""
    t = _tuning.current()
    f = _forced.get() if forced else None
    isa = _ext.conv2d.isa()
    key = (g, dtype, pass_, finite, tile, isa, t.serial, f, packed)
    plan = _CACHE.get(key)
    if plan is None:
        plan = _choose(Query(g, dtype, pass_, finite, tile, isa, t, packed),
                       _forced_for(f, pass_))
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = plan
    return plan


def _choose(q, forced_name):
    algs = _REGISTRY[q.pass_]
    if forced_name is not None:
        alg = next(a for a in algs if a.name == forced_name)
        reason = alg.supports(q)
        if reason is not None:
            raise ValueError(f"force_conv_algorithm: {forced_name} cannot run this "
                             f"{q.pass_} ({q.g.describe()}, {_dtype_name(q.dtype)}): "
                             f"{reason}")
        return alg.plan(q)
    for alg in algs:
        if alg.supports(q) is None and alg.declines(q) is None:
            return alg.plan(q)
    raise RuntimeError(f"no conv algorithm runs {q}")  # (im2col and scatter run all)


def _dtype_name(dtype):
    return getattr(dtype, "__name__", None) or str(dtype)


@dataclasses.dataclass(frozen=True)
class Explanation:
    """explain_conv's answer: the plan chosen and, for every other algorithm of the
    pass, why it was not (``refused``: cannot run it; ``declined``: a later one suits
    better).  str() gives a readable report."""
    pass_: str
    geometry: ConvGeometry
    dtype: str
    plan: Plan
    reasons: tuple  # ((name, "refused" | "declined" | "after", reason), ...)

    @property
    def algorithm(self):
        return self.plan.name

    @property
    def runnable(self):
        """The names of the algorithms that can run the call (the chosen one first):
        what force_conv_algorithm accepts for it."""
        return (self.plan.name,) + tuple(n for n, kind, _ in self.reasons
                                         if kind != "refused")

    @property
    def refused(self):
        """{name: reason} of every algorithm of the pass that did not run."""
        return {name: reason for name, _, reason in self.reasons}

    def __str__(self):
        lines = [f"{self.pass_}: {self.plan.describe()}",
                 f"  geometry: {self.geometry.describe()} {self.dtype}"]
        for name, kind, reason in self.reasons:
            lines.append(f"  {kind}: {name} ({reason})")
        return "\n".join(lines)


def explain(g, dtype, pass_, finite=True, tile=None):
    """The Explanation of pass_ for g and dtype (under the force and tuning in force)."""
    _check_pass(pass_)
    plan = select(g, dtype, pass_, finite, tile)
    q = Query(g, dtype, pass_, finite, tile, _ext.conv2d.isa(), _tuning.current())
    reasons = []
    seen = False
    for alg in _REGISTRY[pass_]:
        if alg is plan.algorithm:
            seen = True
            continue
        refused = alg.supports(q)
        if refused is not None:
            reasons.append((alg.name, "refused", refused))
        else:
            declined = alg.declines(q)
            if declined is not None:
                reasons.append((alg.name, "declined", declined))
            else:
                reasons.append((alg.name, "after" if seen else "not forced",
                                f"it runs this call, but {plan.name} comes first"
                                if seen else f"{plan.name} is forced"))
    return Explanation(pass_, g, _dtype_name(dtype), plan, tuple(reasons))


def report(plan, seconds):
    """The FASTCONV_VERBOSE line of one pass."""
    print(f"fastconv: conv2d {plan.pass_} {plan.g.describe()} {_dtype_name(plan.dtype)}: "
          f"{plan.describe()} {seconds * 1e3:.3f} ms", file=sys.stderr, flush=True)
