"""Fault injection for the tests in tests/faults: collectors that fail on purpose, installed as real
third-party plugins (a ``wattprof.collectors`` entry point on ``PYTHONPATH``), so a real
``wattprof record`` process loads them exactly as it loads a user's plugin. Nothing of wattprof
is mocked.

- ``fault-every-nth:n=N``: raises on every Nth read (a flaky sensor);
- ``fault-hang:after=K,seconds=S``: its Kth read blocks for S seconds (0: for ever);
- ``fault-plugin:on=open|close``: a third-party plugin whose ``open()`` or ``close()`` raises an
  exception that is not a wattprof error (``KeyError``);
- ``fault-vanish:after=K,devices=N``: the real NVML collector on the replay backend, whose GPUs
  fall off the bus after K reads (``ReplayNvml.lost``: NVML_ERROR_GPU_IS_LOST from then on).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from wattprof.collectors.base import Collector
from wattprof.collectors.nvml import NvmlReplayCollector
from wattprof.run import Run

HERE = Path(__file__).resolve().parent

ENTRY_POINTS = {
    "fault-every-nth": "faultkit:EveryNth",
    "fault-hang": "faultkit:Hang",
    "fault-vanish": "faultkit:Vanish",
    "fault-plugin": "faultkit:BrokenPlugin",
}


class EveryNth(Collector):
    name = "fault-every-nth"
    metrics = ("power_w",)

    def __init__(self, *, n: int = 3, **kw: Any) -> None:
        super().__init__(**kw)
        self.n = int(n)
        self.k = 0

    def open(self) -> dict[str, dict]:
        return {"gpu:7": {"kind": "gpu", "name": "flaky test sensor"}}

    def read(self) -> list[dict[str, Any]]:
        self.k += 1
        if self.k % self.n == 0:
            raise RuntimeError(f"injected failure on read {self.k}")
        return [{"device": "gpu:7", "power_w": 100.0}]


class Hang(Collector):
    name = "fault-hang"
    metrics = ("power_w",)

    def __init__(self, *, after: int = 5, seconds: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.after = int(after)
        self.seconds = float(seconds)
        self.k = 0

    def open(self) -> dict[str, dict]:
        return {"gpu:6": {"kind": "gpu", "name": "hanging test sensor"}}

    def read(self) -> list[dict[str, Any]]:
        self.k += 1
        if self.k == self.after:
            time.sleep(self.seconds if self.seconds > 0 else 1e6)
        return [{"device": "gpu:6", "power_w": 50.0}]


class Vanish(NvmlReplayCollector):
    name = "fault-vanish"

    def __init__(self, *, after: int = 10, **kw: Any) -> None:
        super().__init__(**kw)
        self.after = int(after)
        self.k = 0

    def read(self) -> list[dict[str, Any]]:
        self.k += 1
        if self.k == self.after:
            self.nvml.lost.update(range(len(self._handles)))  # every GPU falls off the bus
        return super().read()


class BrokenPlugin(Collector):
    name = "fault-plugin"
    metrics = ("power_w",)

    def __init__(self, *, on: str = "open", **kw: Any) -> None:
        super().__init__(**kw)
        self.on = on

    def open(self) -> dict[str, dict]:
        if self.on == "open":
            raise KeyError("injected: open() of a third-party plugin")
        return {"gpu:5": {"kind": "gpu", "name": "plugin test sensor"}}

    def read(self) -> list[dict[str, Any]]:
        return [{"device": "gpu:5", "power_w": 25.0}]

    def close(self) -> None:
        if self.on == "close":
            raise KeyError("injected: close() of a third-party plugin")


def plugin_env(tmp: Path) -> dict[str, str]:
    """Environment that installs the fault collectors as plugins (a dist-info on PYTHONPATH)."""
    site = tmp / "fault-site"
    dist = site / "wattprof_faultkit-0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wattprof-faultkit\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(
        "[wattprof.collectors]\n" + "".join(f"{k} = {v}\n" for k, v in ENTRY_POINTS.items()))
    paths = [str(site), str(HERE), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def events(run: Path) -> list[dict]:
    r = Run.open(run)
    return r.events.to_dict("records") if len(r.events) else []


def kinds(run: Path) -> list[str]:
    return [e["kind"] for e in events(run)]


def max_gap(t: Any) -> float:
    import numpy as np

    t = np.sort(np.asarray(t, dtype=float))
    return float(np.diff(t).max()) if len(t) > 1 else float("inf")
