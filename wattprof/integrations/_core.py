"""What the Hugging Face and Lightning callbacks share: their options, starting (or joining) the
node's run through :func:`wattprof.distributed.node_profile`, buffered step marks, the energy keys
they log, and closing the run. Each callback only maps its framework's hooks onto this core.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import distributed
from ..options import ProfileOptions

if TYPE_CHECKING:
    from ..api import Profile


@dataclass(frozen=True)
class EnergySoFar:
    """This node's energy up to the run's last flush, and the mean power since the previous log
    (None when no new sample was flushed since)."""

    energy_j: float
    power_w: float | None


class CallbackCore:
    """One training run's recording for a framework callback.

    ``options``: the profile's options (``out`` is the job's run directory: the run with one node,
    ``out/node<k>`` shards with several). ``flush_every``: step marks are written at least every
    this many steps (token tensors are read then). ``close_at_exit``: finalise the run as
    ``interrupted`` at interpreter exit if it is still open (for frameworks without an exception
    hook; the sampler process finalises it anyway if this process dies)."""

    def __init__(self, options: ProfileOptions, *, flush_every: int = 32, close_at_exit: bool = False) -> None:
        self.options = options
        self.flush_every = flush_every
        self.close_at_exit = close_at_exit
        self.profile: Profile | None = None
        self.run_dir: Path | None = None
        self.info: distributed.DistInfo | None = None
        self.buffer: distributed.StepBuffer | None = None
        self._last_log: tuple[float, float] | None = None  # (t_last, energy_j) at the previous log
        self._atexit = False

    @property
    def active(self) -> bool:
        return self.profile is not None and self.buffer is not None

    def start(self, info: distributed.DistInfo) -> bool:
        """Start (local rank 0) or join (other local ranks) the node's run; False when this rank
        cannot find it (a warning said so) or a run is already open."""
        if self.profile is not None:
            return False
        self.info = info
        self.profile = distributed.node_profile(info=info, options=self.options)
        if self.profile is None:
            return False
        self.run_dir = self.profile.run_dir
        self.buffer = distributed.StepBuffer(self.profile, max_pending=self.flush_every)
        self._last_log = None
        if self.close_at_exit and not self._atexit:
            atexit.register(self._at_exit)
            self._atexit = True
        return True

    def now(self) -> float:
        """The profile's clock (the times steps are stamped with)."""
        assert self.profile is not None
        return self.profile.clock.time()

    def add_step(self, t_start: float, t_end: float, tokens: Any, *, step: int) -> None:
        if self.buffer is not None:
            self.buffer.add(t_start, t_end, tokens, step=step)

    def flush(self) -> None:
        if self.buffer is not None:
            self.buffer.flush()

    @property
    def tokens_written(self) -> float:
        """Tokens of this rank's steps written so far."""
        return self.buffer.tokens_written if self.buffer is not None else 0.0

    def energy_so_far(self) -> EnergySoFar | None:
        """This node's energy so far, read from the run directory (up to its last flush, at most
        ~1 s old), and the mean power since the previous call; None before the first flush."""
        from ..live import energy_so_far

        if self.run_dir is None:
            return None
        so_far = energy_so_far(self.run_dir)
        if so_far is None:
            return None
        power = None
        t0, e0 = self._last_log if self._last_log is not None else (so_far.t_first, 0.0)
        if so_far.t_last > t0:
            power = (so_far.energy_j - e0) / (so_far.t_last - t0)
            self._last_log = (so_far.t_last, so_far.energy_j)
        return EnergySoFar(so_far.energy_j, power)

    def close(self, status: str = "finished") -> None:
        """Write pending marks and finalise (or leave, when joined) the run. Idempotent."""
        prof, self.profile = self.profile, None
        if prof is None:
            return
        try:
            if self.buffer is not None:
                self.buffer.flush()
        finally:
            self.buffer = None
            prof.stop(status=status)

    def _at_exit(self) -> None:
        if self.profile is not None:
            self.close("interrupted")


__all__ = ["CallbackCore", "EnergySoFar"]


class CoreAccess:
    """What a framework callback built on a :class:`CallbackCore` (its ``core``) shows its user."""

    core: CallbackCore

    @property
    def profile(self) -> Profile | None:
        return self.core.profile

    @property
    def run_dir(self) -> Path | None:
        return self.core.run_dir

    @property
    def info(self) -> distributed.DistInfo | None:
        return self.core.info
