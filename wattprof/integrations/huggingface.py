"""Hugging Face ``Trainer`` integration (extra ``[hf]``): energy per optimizer step and token.

    from wattprof.integrations.huggingface import add_to
    trainer = Trainer(model, args, ...)
    add_to(trainer, collectors=["nvml"])     # callback first, train() finalises on exceptions
    trainer.train()

What it does (docs/integrations.md has the details):

- ``on_train_begin``: starts the node's run (local rank 0 samples, other local ranks join: see
  :func:`wattprof.distributed.node_profile`), or joins the run of an enclosing ``wattprof
  record`` / ``wattprof.profile()``.
- One step per optimizer step, from ``on_step_begin`` to ``on_step_end`` (all its gradient
  accumulation micro-batches), ``step`` = ``state.global_step``, on every rank.
- Tokens: when the Trainer counts them (``include_num_input_tokens_seen``), the step's
  ``state.num_input_tokens_seen`` delta, which the Trainer has already summed over ranks, so it is
  recorded on global rank 0's steps only; otherwise this rank's batch, counted by a forward
  pre-hook on the model (non-padding tokens from the ``attention_mask``, else ``input_ids``), on
  every rank's steps. Counts stay on the device until the marks are written (every
  ``flush_every`` steps and at each log), so counting never synchronises the GPU per step.
- ``on_log`` (global rank 0): adds ``energy_j`` (this node's energy so far, read from the run
  directory: up to its last flush, at most ~1 s old), ``power_w`` (mean power since the previous
  log, or since the start; absent while no new sample was flushed) and ``j_per_token`` to the logs, and to the ``state.log_history`` entry the Trainer has
  just appended. Trackers (``report_to``) are callbacks that run before user callbacks, so they see
  the keys only when this callback comes first: use :func:`add_to`.
- ``on_train_end``: writes the pending marks and finalises the run. The Trainer has no exception
  hook: :func:`add_to` wraps ``trainer.train`` so that an exception finalises the run as
  ``failed`` (``interrupted`` on KeyboardInterrupt) before it propagates; an ``atexit`` handler
  covers the rest, and the sampler process finalises the run by itself if this process dies.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from .. import distributed
from ..options import DEFAULT_INTERVAL_S, profile_options
from ._core import CallbackCore, CoreAccess

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def _counts_tokens(args: Any) -> bool:
    v = getattr(args, "include_num_input_tokens_seen", "no")
    if isinstance(v, bool):
        return v
    return v not in (None, "no", "none", "false", "False")


class WattprofCallback(TrainerCallback, CoreAccess):
    """Record a wattprof run around ``Trainer.train()``: one step per optimizer step, with tokens.

    Args:
        name: the run's name (default ``hf-train``).
        out: run directory (one node: the run; several: ``out/node<k>`` shards to merge). Default:
            ``$WATTPROF_DIR/<time>-<name>`` chosen by global rank 0.
        collectors, interval, sync: as for :func:`wattprof.profile`.
        tags: run tags.
        label: the label of the steps (default ``train``).
        log_energy: add ``energy_j``, ``power_w``, ``j_per_token`` to the Trainer's logs.
        flush_every: write step marks at least every this many steps.
        profile_kwargs: more :class:`wattprof.api.Profile` options (``sampler``, ``clock``...).
    """

    def __init__(self, name: str | None = None, *, out: str | Path | None = None,
                 collectors: Sequence[str] | None = None, interval: float = DEFAULT_INTERVAL_S,
                 tags: dict[str, str] | None = None, label: str = "train", sync: Any = None, log_energy: bool = True,
                 flush_every: int = 32, **profile_kwargs: Any) -> None:
        options = profile_options(name or "hf-train", collectors=collectors, interval=interval, out=out, tags=tags,
                                  label=label, sync=sync, **profile_kwargs)
        self.core = CallbackCore(options, flush_every=flush_every, close_at_exit=True)
        self.log_energy = log_energy
        self._hook: Any = None
        self._hook_tokens: list[Any] = []
        self._trainer_counts = False
        self._tokens_seen = 0.0
        self._tokens_total = 0.0
        self._t_step: float | None = None

    # ---- lifecycle --------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.core.profile is not None:
            return
        env = distributed.detect()
        info = distributed.DistInfo(
            rank=int(getattr(args, "process_index", env.rank)), local_rank=max(int(getattr(args, "local_process_index",
                                                                                  env.local_rank)), 0),
            world_size=int(getattr(args, "world_size", env.world_size)), local_world_size=env.local_world_size,
            node_rank=env.node_rank, num_nodes=env.num_nodes, job_id=env.job_id, launcher="hf")
        if not self.core.start(info):
            return
        self._trainer_counts = _counts_tokens(args)
        self._tokens_seen = float(getattr(state, "num_input_tokens_seen", 0) or 0)
        self._tokens_total = 0.0
        if not self._trainer_counts and model is not None and hasattr(model, "register_forward_pre_hook"):
            self._hook = model.register_forward_pre_hook(self._count_hook, with_kwargs=True)

    def _count_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        if not getattr(module, "training", True):
            return  # evaluation and generation forwards are not training tokens
        batch = dict(kwargs)
        if "input_ids" not in batch and args:
            batch["input_ids"] = args[0]
        n = distributed.count_tokens(batch)
        if n is not None:
            self._hook_tokens.append(n)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.core.active:
            self._t_step = self.core.now()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.core.active:
            return
        t_end = self.core.now()
        t_start = self._t_step if self._t_step is not None else t_end
        self._t_step = None
        if self._trainer_counts:
            seen = float(getattr(state, "num_input_tokens_seen", 0) or 0)
            delta, self._tokens_seen = seen - self._tokens_seen, seen
            self._tokens_total += delta
            tokens: Any = delta if self.info is None or self.info.rank == 0 else None  # already summed over ranks
        else:
            tokens, self._hook_tokens = self._hook_tokens, []
        self.core.add_step(t_start, t_end, tokens or None, step=int(state.global_step))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not self.core.active:
            return
        self.core.flush()
        if not self.log_energy or logs is None or not getattr(state, "is_world_process_zero", True):
            return
        keys = self.energy_logs()
        if not keys:
            return
        entry = state.log_history[-1] if getattr(state, "log_history", None) else None
        matches = isinstance(entry, dict) and all(entry.get(k) == v for k, v in logs.items())
        logs.update(keys)
        if matches and isinstance(entry, dict):  # the Trainer appended a copy of logs: keep the history complete
            entry.update(keys)

    def energy_logs(self) -> dict[str, float]:
        """``energy_j``, ``power_w`` and ``j_per_token`` so far (this node), as logged."""
        so_far = self.core.energy_so_far()
        if so_far is None:
            return {}
        out = {"energy_j": round(so_far.energy_j, 3)}
        if so_far.power_w is not None:
            out["power_w"] = round(so_far.power_w, 2)
        tokens = self._node_tokens()
        if tokens:
            out["j_per_token"] = so_far.energy_j / tokens
        return out

    def _node_tokens(self) -> float:
        """Tokens of this node so far: the Trainer's global count shared by nodes, or this rank's
        count times the node's ranks (both assume equal batches on every rank)."""
        info = self.info or distributed.DistInfo()
        if self._trainer_counts:
            return self._tokens_total / max(info.num_nodes, 1)
        return self.core.tokens_written * max(info.local_world_size, 1)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close("finished")

    def close(self, status: str = "finished") -> None:
        """Write pending marks, remove the token hook and finalise (or leave) the run. Idempotent."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.core.close(status)


def add_to(trainer: Any, callback: WattprofCallback | None = None, **kwargs: Any) -> WattprofCallback:
    """Insert a :class:`WattprofCallback` (given, or built from ``kwargs``) first in
    ``trainer``'s callbacks, so that the trackers' ``on_log`` see its keys, and wrap
    ``trainer.train`` so that an exception finalises the run (``failed``; ``interrupted`` on
    KeyboardInterrupt) before propagating. Returns the callback."""
    cb = callback or WattprofCallback(**kwargs)
    cbs = trainer.callback_handler.callbacks
    if cb in cbs:
        cbs.remove(cb)
    cbs.insert(0, cb)
    train = trainer.train
    if not getattr(train, "_wattprof_wrapped", False):
        @functools.wraps(train)
        def wrapped(*a: Any, **kw: Any) -> Any:
            try:
                return train(*a, **kw)
            except KeyboardInterrupt:
                cb.close("interrupted")
                raise
            except BaseException:
                cb.close("failed")
                raise

        wrapped._wattprof_wrapped = True  # type: ignore[attr-defined]
        trainer.train = wrapped
    return cb
