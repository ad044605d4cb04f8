"""wattprof: how many joules each step and each token of a GPU/accelerator run cost, and why.

Public API::

    import wattprof
    with wattprof.profile(name="train") as prof:
        for batch in loader:
            with prof.step(tokens=batch_tokens, label="train"):
                train_step(batch)

    run = wattprof.load_run("wattprof-runs/...")

Importing this package is cheap and side-effect free: NVML, codecarbon, matplotlib and boto3
are imported only by the functions that need them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .api import Profile
    from .run import Run

__all__ = ["profile", "step", "mark", "load_run", "Run", "Profile", "__version__"]


def profile(*args: Any, **kwargs: Any) -> Profile:
    """Profile a block or a function: ``with wattprof.profile(...) as prof:`` or ``@wattprof.profile()``.
    See :class:`wattprof.api.Profile` for the options."""
    from .api import Profile

    return Profile(*args, **kwargs)


def step(tokens: float | None = None, label: str | None = None, **extra: Any):
    """Mark a step in the innermost active profile (or the parent ``wattprof record`` run)."""
    from .api import current

    return current().step(tokens=tokens, label=label, **extra)


def mark(**kwargs: Any) -> None:
    """Record an explicit step boundary in the active profile. See :meth:`Profile.mark`."""
    from .api import current

    current().mark(**kwargs)


def load_run(path: str) -> Run:
    from .run import Run

    return Run.open(path)


def __getattr__(name: str) -> Any:
    if name == "Run":
        from .run import Run

        return Run
    if name == "Profile":
        from .api import Profile

        return Profile
    raise AttributeError(name)
