"""Keep torch's optimizers from importing ``torch._dynamo`` in eager training.

Every ``torch.optim`` optimizer imports ``torch._dynamo`` (about 1.1 s on the 2-core machine, most
of a workflow job's start-up; benchmarks/bench_startup.py) although nothing is compiled:
``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` and the
functional ``adam`` are wrapped in ``torch._compile._disable_dynamo``, which imports dynamo on the
first call to build ``torch._dynamo.disable(fn)``; and each ``step`` is wrapped in
``_use_grad_for_differentiable``, which imports it to call ``torch._dynamo.graph_break()``. No
argument (``fused``, ``foreach``) avoids either path.

Both only matter while dynamo traces a function, and dynamo can only trace once it is imported.
:func:`defer_optimizer_dynamo_import` therefore gives these wrappers what they would compute, with
the import left out while ``torch._dynamo`` is not loaded: the wrapped function itself (a disable
context around eager code is a no-op; ``graph_break`` is one outside tracing). Once anything imports
dynamo (``torch.compile``), they build torch's own wrappers as before. The optimizer runs the same
code on the same tensors: results are bit-identical.

Where torch's internals differ from what this expects (another torch version), the wrappers are
left as they are: training is then only slower to start, never different.
"""

from __future__ import annotations

import functools
import sys
from types import FunctionType

import torch
import torch.optim
from torch.optim.optimizer import Optimizer

try:  # private helpers of torch's: the code objects of its two wrappers, which every function they return shares
    from torch._compile import _disable_dynamo
    from torch.optim.optimizer import _use_grad_for_differentiable

    _DISABLE_CODE = _disable_dynamo(lambda: None).__code__
    _USE_GRAD_CODE = _use_grad_for_differentiable(lambda self: None).__code__
except (ImportError, AttributeError, TypeError):  # another torch: nothing is deferred
    _DISABLE_CODE = _USE_GRAD_CODE = None


def _dynamo_loaded():
    return sys.modules.get("torch._dynamo")


def _closure(fn: FunctionType) -> dict:
    """The variables ``fn`` closes over, by name (an unfilled cell is left out)."""
    free = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            free[name] = cell.cell_contents
        except ValueError:
            pass
    return free


def _defer_disable(inner: FunctionType) -> bool:
    """Pre-fill the cache that ``_disable_dynamo``'s wrapper keeps on the function it wraps; False
    where it was filled already or the wrapper is not as expected."""
    free = _closure(inner)
    fn, recursive = free.get("fn"), free.get("recursive")
    if not callable(fn) or not isinstance(recursive, bool):
        return False
    if getattr(fn, "__dynamo_disable", None) is not None:  # already built (or deferred)
        return False

    def call(*args, **kwargs):
        dynamo = _dynamo_loaded()
        if dynamo is None:  # nothing can be tracing: torch._dynamo.disable(fn) would just call fn
            return fn(*args, **kwargs)
        disabled = dynamo.disable(fn, recursive, wrapping=False)  # what torch's wrapper builds
        setattr(fn, "__dynamo_disable", disabled)
        return disabled(*args, **kwargs)

    setattr(fn, "__dynamo_disable", call)
    return True


def _step_without_dynamo(torch_step: FunctionType):
    """``_use_grad_for_differentiable`` without its graph breaks while dynamo is not loaded."""
    step = torch_step.__wrapped__

    @functools.wraps(step)
    def _use_grad(*args, **kwargs):
        if _dynamo_loaded() is not None:
            return torch_step(*args, **kwargs)
        prev_grad = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(args[0].defaults["differentiable"])
            return step(*args, **kwargs)
        finally:
            torch.set_grad_enabled(prev_grad)

    return _use_grad


def _functions_in(value, depth: int = 3):
    """``value`` and the functions it wraps (``__wrapped__``) or closes over."""
    if not isinstance(value, FunctionType) or depth == 0:
        return
    yield value
    inner = getattr(value, "__wrapped__", None)
    if inner is not None:
        yield from _functions_in(inner, depth - 1)
    for cell_value in _closure(value).values():
        yield from _functions_in(cell_value, depth - 1)


@functools.cache
def defer_optimizer_dynamo_import() -> int:
    """Patch torch.optim as the module docstring says; returns how many wrappers it deferred.

    Call it before the first optimizer is made: an optimizer wraps its class's ``step`` once more
    (profiling hooks) when the first one is built, and a ``step`` wrapped so is left as it is."""
    deferred = 0
    if _DISABLE_CODE is None:
        return deferred
    modules = [m for name, m in list(sys.modules.items()) if name.startswith("torch.optim.") and m is not None]
    for module in modules:
        for value in list(vars(module).values()):
            if isinstance(value, type) and issubclass(value, Optimizer) and value.__module__ == module.__name__:
                step = value.__dict__.get("step")
                if isinstance(step, FunctionType) and step.__code__ is _USE_GRAD_CODE:
                    value.step = _step_without_dynamo(step)
                    deferred += 1
                members = list(vars(value).values())
            else:
                members = [value]
            for member in members:
                for fn in _functions_in(member):
                    if fn.__code__ is _DISABLE_CODE:
                        deferred += _defer_disable(fn)
    return deferred
