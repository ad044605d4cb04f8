"""The recorded program as a child of ``wattprof record``: it must not outlive a recorder killed
with SIGKILL (nothing would then forward signals to it, or wait for it).

On Linux the child asks the kernel for ``SIGTERM`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``,
set between fork and exec); SIGTERM lets it clean up as on any shutdown. Elsewhere nothing is set:
documented in docs/reliability.md.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
#: the signal the recorded program gets when ``wattprof record`` dies without forwarding one
PARENT_DEATH_SIGNAL = signal.SIGTERM


def parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that sets the parent-death signal, or None
    where that is not available. Everything it needs is looked up here, before the fork: after
    it only a C call runs (no import, no ``dlopen``, no lock of the parent's threads)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sig = int(PARENT_DEATH_SIGNAL)
    getppid, kill, getpid = os.getppid, os.kill, os.getpid

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if getppid() != parent:  # the parent died before the call: nobody would send the signal
            kill(getpid(), sig)

    return preexec
