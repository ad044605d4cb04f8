"""A third-party collector: a power sensor that another program writes to a file (watts, one
number), recorded next to nothing else, with what happens beside its readings as events.

Run it:  python examples/plugin/file_sensor.py [RUN_DIR]
It records three seconds while a helper thread writes readings, removes the file for a while and
puts it back, then prints the run's samples count, the device's metadata and the events.

Register it for `wattprof record -c file-sensor:path=/run/pdu.txt` with an entry point::

    [options.entry_points]
    wattprof.collectors =
        file-sensor = mypkg.file_sensor:FileSensor
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from wattprof.clock import SYSTEM_CLOCK, Clock
from wattprof.collectors.base import BAD_OUTPUT, Collector


class FileSensor(Collector):
    """``file-sensor[:path=FILE,device=pdu:0]``: watts read from ``path`` at every tick."""

    name = "file-sensor"
    metrics = ("power_w",)

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, path: str = "sensor.txt", device: str = "pdu:0") -> None:
        super().__init__(clock=clock)
        self.path = Path(path)
        self.device = device
        self._missing = False
        self._max_w = 0.0

    def options(self) -> dict[str, Any]:
        return {"path": str(self.path), "device": self.device}

    def open(self) -> dict[str, dict]:
        return {self.device: {"kind": "other", "name": "file sensor",
                              "power_source": f"measured: watts written to {self.path} by another program"}}

    def read(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except OSError as e:
            if not self._missing:  # an event once, not an error on every tick
                self._missing = True
                self.emit("sensor_missing", f"{self.path}: {e.strerror}; no reading until it is back",
                          device=self.device)
            return []
        if self._missing:
            self._missing = False
            self.emit("sensor_back", f"{self.path}: readable again", device=self.device)
        try:
            watts = float(text)
        except ValueError:
            self.emit(BAD_OUTPUT, f"{self.path} holds {text.strip()[:40]!r}, not watts", device=self.device)
            return []
        if watts > self._max_w:  # late metadata: merged into the run's devices
            self._max_w = watts
            self.update_device(self.device, {"max_seen_w": watts})
        return [{"device": self.device, "power_w": watts}]


def _writer(path: Path, stop: threading.Event) -> None:
    k = 0
    while not stop.is_set():
        k += 1
        if 10 <= k < 20:
            path.unlink(missing_ok=True)  # the sensor program restarts
        else:  # written whole, then renamed: a reader never sees half a number
            tmp = path.with_suffix(".tmp")
            tmp.write_text(f"{100 + k}\n")
            tmp.replace(path)
        time.sleep(0.1)


def main(run_dir: str) -> None:
    from wattprof.recording.recorder import Recorder
    from wattprof.run import Run, RunWriter

    sensor = Path(tempfile.mkdtemp()) / "pdu.txt"
    sensor.write_text("100\n")
    stop = threading.Event()
    helper = threading.Thread(target=_writer, args=(sensor, stop), daemon=True)
    writer = RunWriter.create(Path(run_dir), name="file-sensor")
    rec = Recorder(writer, [FileSensor(path=str(sensor))], interval=0.1)
    rec.start()
    helper.start()
    time.sleep(3.0)
    stop.set()
    rec.stop()
    writer.finalize(status="finished")
    run = Run.open(Path(run_dir))
    print(f"samples: {len(run.samples)}")
    print(f"device: {run.devices['pdu:0']}")
    for e in run.events.to_dict("records"):
        print(f"event {e['kind']}: {e['message']}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="wattprof-file-sensor-") + "/run")
