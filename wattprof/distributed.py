"""Distributed jobs: who this process is (rank, local rank, node), one sampler per node, and step
marks from every rank.

Detection (REFERENCE.md, Integrations): torchrun sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE`` and ``GROUP_RANK`` (the node's rank); Slurm sets ``SLURM_PROCID``,
``SLURM_LOCALID``, ``SLURM_NODEID``, ``SLURM_NTASKS``, ``SLURM_NNODES`` and ``SLURM_JOB_ID``.
torchrun's variables win when both are present (torchrun started by ``srun``, one task per node:
``SLURM_PROCID`` then numbers nodes, not processes). Lightning's own launcher sets only
``LOCAL_RANK``/``NODE_RANK``/``WORLD_SIZE``: its callback passes the trainer's ranks instead.

One run per node (:func:`node_profile`): local rank 0 starts the profile (and its sampler, which
measures every GPU of the node); the other local ranks join that run and write their own
``steps-<rank>-<pid>.jsonl`` files in it. How they find it:

1. ``$WATTPROF_RUN_DIR`` (the job runs under ``wattprof record``): every rank joins it.
2. ``torch.distributed`` is initialised (Hugging Face Trainer, Lightning, any DDP script): global
   rank 0 chooses the run directory (``out``, else a new ``$WATTPROF_DIR/<time>-<name>``) and
   broadcasts it; local rank 0 of each node creates its shard, the others wait for its
   ``meta.json``.
3. No process group: the directory must be the same for every rank: ``out``, else one named
   after the launch (``slurm-<job>.<step>``, torchrun's ``TORCHELASTIC_RUN_ID``). The others wait
   for a ``meta.json`` there that is still recording and was created after this process started
   (a leftover run from an earlier launch is never joined).

With one node the run directory is ``out`` itself; with several, node ``k`` records
``out/node<k>`` and :func:`wattprof.merge.merge_runs` (``wattprof merge``) makes one run of the
shards, device ids prefixed by node (``node1/gpu:0``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import WattprofError
from .options import ProfileOptions, profile_options

if TYPE_CHECKING:
    from .api import Profile

log = logging.getLogger(__name__)

#: Seconds a non-zero local rank waits for local rank 0 to create the node's run.
JOIN_TIMEOUT_S = 120.0
#: A run created this long before this process started is a leftover, never joined.
STALE_MARGIN_S = 60.0


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a job (single process: all zero / one)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    num_nodes: int = 1
    job_id: str | None = None
    launcher: str = "none"  # torchrun | slurm | lightning | hf | none

    @property
    def is_node_leader(self) -> bool:
        """Local rank 0: the process that samples the node."""
        return self.local_rank == 0

    @property
    def node(self) -> str:
        """The node's name in merged runs: ``node<k>``."""
        return f"node{self.node_rank}"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int(env: Mapping[str, str], *names: str) -> int | None:
    for n in names:
        v = env.get(n)
        if v is not None and v.strip().lstrip("-").isdigit():
            return int(v)
    return None


def _slurm_tasks_per_node(env: Mapping[str, str]) -> int | None:
    n = _int(env, "SLURM_NTASKS_PER_NODE")
    if n:
        return n
    v = env.get("SLURM_TASKS_PER_NODE")  # e.g. "4(x2),3": this node's count is not told; take the first
    if v:
        head = v.split(",")[0].split("(")[0]
        if head.isdigit():
            return int(head)
    return None


def detect(env: Mapping[str, str] | None = None) -> DistInfo:
    """This process's ranks from the launcher's environment: torchrun, Slurm, or none."""
    env = os.environ if env is None else env
    job = None
    if env.get("SLURM_JOB_ID"):
        job = f"slurm-{env['SLURM_JOB_ID']}" + (f".{env['SLURM_STEP_ID']}" if env.get("SLURM_STEP_ID") else "")
    run_id = env.get("TORCHELASTIC_RUN_ID")
    if env.get("RANK") is not None and _int(env, "RANK") is not None:
        rank = _int(env, "RANK") or 0
        world = _int(env, "WORLD_SIZE") or 1
        local = _int(env, "LOCAL_RANK")
        local = rank if local is None else local
        lws = _int(env, "LOCAL_WORLD_SIZE") or world
        node = _int(env, "GROUP_RANK", "NODE_RANK")
        node = rank // max(lws, 1) if node is None else node
        nodes = max(1, -(-world // max(lws, 1)))
        if run_id and run_id != "none":
            job = job or f"torchrun-{run_id}"
        return DistInfo(rank, local, world, lws, node, nodes, job, "torchrun")
    if env.get("SLURM_PROCID") is not None and _int(env, "SLURM_PROCID") is not None:
        rank = _int(env, "SLURM_PROCID") or 0
        world = _int(env, "SLURM_NTASKS") or 1
        local = _int(env, "SLURM_LOCALID")
        local = 0 if local is None else local
        nodes = _int(env, "SLURM_NNODES", "SLURM_JOB_NUM_NODES") or 1
        lws = _slurm_tasks_per_node(env) or max(1, -(-world // nodes))
        node = _int(env, "SLURM_NODEID")
        node = rank // lws if node is None else node
        return DistInfo(rank, local, world, lws, node, nodes, job, "slurm")
    return DistInfo(job_id=job)


def shard_dir(base: str | os.PathLike, info: DistInfo) -> Path:
    """The run directory of this process's node: ``base`` (one node) or ``base/node<k>``."""
    b = Path(base)
    return b / info.node if info.num_nodes > 1 else b


def _dist_ready() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def _broadcast_base(base: str | None) -> str | None:
    """Global rank 0's ``base`` on every rank (a collective: every rank must call it)."""
    import torch.distributed as dist

    obj = [base]
    dist.broadcast_object_list(obj, src=0)
    return obj[0]


def _process_start() -> float:
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - psutil missing or no /proc: be lenient (no stale check)
        return 0.0


def wait_for_run(path: Path, *, timeout: float = JOIN_TIMEOUT_S, not_before: float | None = None,
                 poll: float = 0.05) -> Path:
    """Wait until ``path`` holds a run that is recording (and started at or after ``not_before``)."""
    from .run import Run

    deadline = time.monotonic() + timeout
    while True:
        if (path / "meta.json").is_file():
            with contextlib.suppress(WattprofError, OSError):
                meta = Run.read_meta(path)
                fresh = not_before is None or (meta.get("started_at") or 0) >= not_before
                if meta.get("status") == "recording" and fresh:
                    return path
        if time.monotonic() > deadline:
            raise WattprofError(f"no recording run appeared in {path} within {timeout:.0f} s: local rank 0 "
                                "did not start its profile (or this is a leftover run from an earlier launch)")
        time.sleep(poll)


def node_profile(out: str | os.PathLike | None = None, *, name: str | None = None, info: DistInfo | None = None,
                 tags: dict[str, str] | None = None, timeout: float = JOIN_TIMEOUT_S,
                 options: ProfileOptions | None = None, **profile_kwargs: Any) -> Profile | None:
    """Start (local rank 0) or join (other local ranks) this node's run; returns the started
    :class:`~wattprof.api.Profile`, or ``None`` when a non-zero local rank has no way to find the
    run (no process group, no ``out``, no launch id: a warning says so; its steps are not recorded).

    The profile's options: ``options`` (a :class:`~wattprof.options.ProfileOptions`), else
    ``profile_kwargs`` as for :class:`~wattprof.api.Profile` (``collectors``, ``interval``,
    ``sampler``, ``sync``, ``label``...); ``out``, ``name`` and ``tags`` given here win. Every
    profile carries this process's rank explicitly (``rank=info.rank``). When ``torch.distributed``
    is initialised this is a collective: every rank must call it."""
    from .api import Profile

    info = info or detect()
    opts = options if options is not None else profile_options(**profile_kwargs)
    opts = opts.replace(name=name if name is not None else opts.name, rank=info.rank,
                        tags={**opts.tags, **(tags or {})})
    base = out if out is not None else opts.out
    if isinstance(opts.join, Path) or (opts.join and _recorded_run() is not None):
        return Profile.from_options(opts).start()  # a given run, or `wattprof record`'s: every rank joins it
    started_before = _process_start() - STALE_MARGIN_S
    base_dir = _node_base(base, opts.name, info)
    if info.num_nodes > 1:
        opts = opts.replace(tags={"node": info.node, **opts.tags})
    if info.is_node_leader:
        shard = shard_dir(base_dir, info) if base_dir is not None else None
        return Profile.from_options(opts.replace(out=shard, join=False)).start()
    if base_dir is None:
        warnings.warn(f"wattprof: local rank {info.local_rank} cannot find its node's run (no torch.distributed process group, no "
                      "out= directory, no Slurm/torchrun job id): its steps are not recorded",
                      RuntimeWarning, stacklevel=2)
        return None
    path = shard_dir(base_dir, info)
    wait_for_run(path, timeout=timeout, not_before=started_before)
    return Profile.from_options(opts.replace(join=path)).start()


def _recorded_run() -> Path | None:
    """The run of an enclosing ``wattprof record`` (``$WATTPROF_RUN_DIR`` holding a run), or None."""
    from .api import ENV_RUN_DIR

    parent = os.environ.get(ENV_RUN_DIR)
    return Path(parent) if parent and (Path(parent) / "meta.json").is_file() else None


def _node_base(out: str | os.PathLike | None, name: str | None, info: DistInfo) -> Path | None:
    """The job's run directory (the node's shard is under it with several nodes), the same on every
    rank: global rank 0's ``out`` (or a new one) broadcast over the process group; without one,
    ``out``, else one named after the launch (``slurm-<job>.<step>``, torchrun's run id)."""
    from .run import default_run_dir, safe_name

    base: str | None = str(out) if out is not None else None
    if _dist_ready():
        if info.rank != 0:
            base = None
        elif base is None:
            base = str(default_run_dir(name))
        base = _broadcast_base(base)
    elif base is None and info.distributed and info.job_id:
        root = Path(os.environ.get("WATTPROF_DIR") or "wattprof-runs")
        base = str(root / f"{safe_name(info.job_id)}-{safe_name(name or 'run')}")
    return Path(base) if base is not None else None


# ---- step marks from callbacks ----------------------------------------------------------------


def count_tokens(batch: Any) -> Any:
    """Tokens in a batch, without waiting for the device: the attention mask's sum (non-padding
    tokens) when there is a 2-D one, else the number of ``input_ids``; ``None`` when neither is
    found. May return a 0-d tensor (resolved later by :class:`StepBuffer`, so that counting never
    synchronises the GPU)."""
    get = batch.get if isinstance(batch, Mapping) else (lambda k: getattr(batch, k, None))
    mask = get("attention_mask")
    if mask is not None and getattr(mask, "dim", lambda: 0)() == 2:
        return mask.sum()
    ids = get("input_ids")
    if ids is not None and hasattr(ids, "numel"):
        return int(ids.numel())
    return None


def to_number(v: Any) -> float | None:
    """A token count (int, float, 0-d tensor, list of them) as a float."""
    if v is None:
        return None
    if isinstance(v, list | tuple):
        vals = [n for n in (to_number(x) for x in v) if n is not None]
        return float(sum(vals)) if vals else None
    if hasattr(v, "item"):
        v = v.item()
    return float(v)


@dataclass
class StepBuffer:
    """Step marks kept for a while before they are written, so that token counts still on the
    GPU are read in batches (each read waits for the device) rather than once per step. Times are
    taken when a step ends; :meth:`flush` writes them through ``Profile.mark(t_start=, t_end=)``."""

    profile: Profile
    max_pending: int = 32
    pending: list[dict[str, Any]] = field(default_factory=list)
    #: steps and tokens written so far
    steps_written: int = 0
    tokens_written: float = 0.0

    def add(self, t_start: float, t_end: float, tokens: Any, **extra: Any) -> None:
        self.pending.append({"t_start": t_start, "t_end": t_end, "tokens": tokens, **extra})
        if len(self.pending) >= self.max_pending:
            self.flush()

    def flush(self) -> None:
        rows, self.pending = self.pending, []
        for r in rows:
            tokens = to_number(r.pop("tokens"))
            self.profile.mark(tokens=tokens, **r)
            self.steps_written += 1
            self.tokens_written += tokens or 0.0
