"""Lightning integration (extra ``[lightning]``): energy per optimizer step (or per batch) and token.

    from wattprof.integrations.lightning import WattprofCallback
    trainer = L.Trainer(callbacks=[WattprofCallback(collectors=["nvml"])])

- ``on_train_start``: starts the node's run (local rank 0 samples, the other local ranks join:
  :func:`wattprof.distributed.node_profile`, with the trainer's own ranks), or joins an enclosing
  ``wattprof record`` / ``wattprof.profile()`` run.
- ``per="optimizer_step"`` (default): one step per optimizer step: from the first micro-batch's
  ``on_train_batch_start`` to the ``on_train_batch_end`` after which ``trainer.global_step`` has
  advanced, tokens summed over its micro-batches (gradient accumulation), ``step`` =
  ``trainer.global_step``. ``per="batch"``: one step per micro-batch (``step`` = batches seen).
- Tokens: ``tokens_fn(batch)`` (a number or a 0-d tensor), else non-padding tokens from the
  batch's ``attention_mask``, else the number of ``input_ids``, else none. This rank's batch only:
  every rank records its own steps and tokens, so the report's totals are the job's.
- Every ``trainer.log_every_n_steps`` optimizer steps, global rank 0 logs ``energy_j`` (this node's
  energy so far, from the run directory, up to ~1 s old), ``power_w`` (mean power since the last
  such log) and ``j_per_token`` through ``pl_module.log`` (``log_energy=False`` turns it off).
- ``on_exception`` writes the pending marks and finalises the run as ``failed`` (``interrupted``
  for KeyboardInterrupt); ``on_train_end`` as ``finished``; ``teardown`` is a last resort.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lightning.pytorch.callbacks import Callback

from .. import distributed
from ..options import DEFAULT_INTERVAL_S, profile_options
from ._core import CallbackCore, CoreAccess

if TYPE_CHECKING:
    pass


class WattprofCallback(Callback, CoreAccess):
    """Record a wattprof run around ``trainer.fit``'s training.

    Args:
        name: the run's name (default ``lightning-train``).
        out: run directory (one node: the run; several: ``out/node<k>`` shards to merge).
        collectors, interval, sync: as for :func:`wattprof.profile`.
        tags: run tags. label: the steps' label (default ``train``).
        per: ``"optimizer_step"`` (default) or ``"batch"`` (each micro-batch is a step).
        tokens_fn: ``tokens_fn(batch) -> number | tensor | None``.
        log_energy: log ``energy_j``, ``power_w``, ``j_per_token`` through ``pl_module.log``.
        flush_every: write step marks at least every this many steps (token tensors are read then).
        profile_kwargs: more :class:`wattprof.api.Profile` options (``sampler``, ``clock``...).
    """

    def __init__(self, name: str | None = None, *, out: str | Path | None = None,
                 collectors: Sequence[str] | None = None, interval: float = DEFAULT_INTERVAL_S,
                 tags: dict[str, str] | None = None, label: str = "train",
                 per: Literal["optimizer_step", "batch"] = "optimizer_step",
                 tokens_fn: Callable[[Any], Any] | None = None, sync: Any = None, log_energy: bool = True,
                 flush_every: int = 32, **profile_kwargs: Any) -> None:
        if per not in ("optimizer_step", "batch"):
            raise ValueError(f"per must be 'optimizer_step' or 'batch', not {per!r}")
        options = profile_options(name or "lightning-train", collectors=collectors, interval=interval, out=out,
                                  tags=tags, label=label, sync=sync, **profile_kwargs)
        self.core = CallbackCore(options, flush_every=flush_every)
        self.per = per
        self.tokens_fn = tokens_fn
        self.log_energy = log_energy
        self._t_step: float | None = None
        self._tokens: list[Any] = []
        self._global_step = 0
        self._batches = 0

    # ---- lifecycle --------------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.core.profile is not None:
            return
        env = distributed.detect()
        info = distributed.DistInfo(
            rank=int(trainer.global_rank), local_rank=int(trainer.local_rank), world_size=int(trainer.world_size),
            local_world_size=max(int(getattr(trainer, "num_devices", 1) or 1), 1),
            node_rank=int(trainer.node_rank), num_nodes=max(int(trainer.num_nodes or 1), 1), job_id=env.job_id,
            launcher="lightning")
        if not self.core.start(info):
            return
        self._global_step = int(trainer.global_step)
        self._batches = 0
        self._tokens = []
        self._t_step = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.core.active and self._t_step is None:
            self._t_step = self.core.now()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.core.active:
            return
        t_end = self.core.now()
        n = self.tokens_fn(batch) if self.tokens_fn is not None else distributed.count_tokens(batch)
        if n is not None:
            self._tokens.append(n)
        self._batches += 1
        stepped = int(trainer.global_step) != self._global_step
        if self.per == "optimizer_step" and not stepped:
            return  # gradient accumulation: the optimizer step is not over yet
        self._global_step = int(trainer.global_step)
        t_start = self._t_step if self._t_step is not None else t_end
        tokens, self._tokens, self._t_step = self._tokens or None, [], None
        step = self._global_step if self.per == "optimizer_step" else self._batches
        self.core.add_step(t_start, t_end, tokens, step=step)
        every = max(int(getattr(trainer, "log_every_n_steps", 50) or 50), 1)
        if self.log_energy and stepped and self._global_step % every == 0:
            self.core.flush()
            if trainer.is_global_zero:
                keys = self.energy_logs()
                if keys:
                    pl_module.log_dict(keys, on_step=True, on_epoch=False, rank_zero_only=True, logger=True)

    def energy_logs(self) -> dict[str, float]:
        """``energy_j``, ``power_w`` and ``j_per_token`` so far (this node)."""
        so_far = self.core.energy_so_far()
        if so_far is None:
            return {}
        out = {"energy_j": so_far.energy_j}
        if so_far.power_w is not None:
            out["power_w"] = so_far.power_w
        info = self.info or distributed.DistInfo()
        tokens = self.core.tokens_written * max(info.local_world_size, 1)  # the node's ranks, assuming equal batches
        if tokens:
            out["j_per_token"] = so_far.energy_j / tokens
        return out

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.close("finished")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.close("interrupted" if isinstance(exception, KeyboardInterrupt) else "failed")

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.close("finished")

    def close(self, status: str = "finished") -> None:
        """Write pending marks and finalise (or leave) the run. Idempotent."""
        self.core.close(status)
