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
from typing import Any, Literal

from lightning.pytorch.callbacks import Callback

from .. import distributed
from ..live import energy_so_far


class WattprofCallback(Callback):
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
                 collectors: Sequence[str] | None = None, interval: float = 0.1, tags: dict[str, str] | None = None,
                 label: str = "train", per: Literal["optimizer_step", "batch"] = "optimizer_step",
                 tokens_fn: Callable[[Any], Any] | None = None, sync: Any = None, log_energy: bool = True,
                 flush_every: int = 32, **profile_kwargs: Any) -> None:
        if per not in ("optimizer_step", "batch"):
            raise ValueError(f"per must be 'optimizer_step' or 'batch', not {per!r}")
        self.name = name or "lightning-train"
        self.out = out
        self.collectors = collectors
        self.interval = interval
        self.tags = tags
        self.label = label
        self.per = per
        self.tokens_fn = tokens_fn
        self.sync = sync
        self.log_energy = log_energy
        self.flush_every = flush_every
        self.profile_kwargs = profile_kwargs
        self.profile: Any = None
        self.run_dir: Path | None = None
        self.info: distributed.DistInfo | None = None
        self._buffer: distributed.StepBuffer | None = None
        self._t_step: float | None = None
        self._tokens: list[Any] = []
        self._global_step = 0
        self._batches = 0
        self._last_log: tuple[float, float] | None = None

    # ---- lifecycle --------------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.profile is not None:
            return
        env = distributed.detect()
        self.info = distributed.DistInfo(
            rank=int(trainer.global_rank), local_rank=int(trainer.local_rank), world_size=int(trainer.world_size),
            local_world_size=max(int(getattr(trainer, "num_devices", 1) or 1), 1),
            node_rank=int(trainer.node_rank), num_nodes=max(int(trainer.num_nodes or 1), 1), job_id=env.job_id,
            launcher="lightning")
        self.profile = distributed.node_profile(
            self.out, name=self.name, info=self.info, tags=self.tags, collectors=self.collectors,
            interval=self.interval, label=self.label, sync=self.sync, **self.profile_kwargs)
        if self.profile is None:
            return
        self.run_dir = self.profile.run_dir
        self._buffer = distributed.StepBuffer(self.profile, max_pending=self.flush_every)
        self._global_step = int(trainer.global_step)
        self._batches = 0
        self._tokens = []
        self._t_step = None
        self._last_log = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.profile is not None and self._t_step is None:
            self._t_step = self.profile.clock.time()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.profile is None or self._buffer is None:
            return
        t_end = self.profile.clock.time()
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
        self._buffer.add(t_start, t_end, tokens, step=step)
        every = max(int(getattr(trainer, "log_every_n_steps", 50) or 50), 1)
        if self.log_energy and stepped and self._global_step % every == 0:
            self._buffer.flush()
            if trainer.is_global_zero:
                keys = self.energy_logs()
                if keys:
                    pl_module.log_dict(keys, on_step=True, on_epoch=False, rank_zero_only=True, logger=True)

    def energy_logs(self) -> dict[str, float]:
        """``energy_j``, ``power_w`` and ``j_per_token`` so far (this node)."""
        if self.run_dir is None:
            return {}
        so_far = energy_so_far(self.run_dir)
        if so_far is None:
            return {}
        out = {"energy_j": so_far.energy_j}
        t0, e0 = self._last_log if self._last_log is not None else (so_far.t_first, 0.0)
        if so_far.t_last > t0:
            out["power_w"] = (so_far.energy_j - e0) / (so_far.t_last - t0)
            self._last_log = (so_far.t_last, so_far.energy_j)
        info = self.info or distributed.DistInfo()
        own = self._buffer.tokens_written if self._buffer is not None else 0.0
        tokens = own * max(info.local_world_size, 1)  # the node's ranks, assuming equal batches
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
        prof, self.profile = self.profile, None
        if prof is None:
            return
        try:
            if self._buffer is not None:
                self._buffer.flush()
        finally:
            self._buffer = None
            prof.stop(status=status)
