"""Tie the devices neuron-monitor numbers to the sysfs ``neuron<N>`` directories: by the same
numbering, by PCI BDF / serial (``neuron-ls -j``) or by the user's ``sysfs_map``; in a container
sysfs numbers devices host-wide while neuron-monitor may number them from 0."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from ..errors import InputError
from .neuron_sysfs import SysfsDevice, normalise_bdf


def parse_sysfs_map(value: Any) -> dict[int, int] | None:
    """``0:4+1:5`` (neuron-monitor index : sysfs neuron<N>; pairs joined by ``+``, as a comma
    separates collector options on the command line, or by ``,`` in Python) -> {0: 4, 1: 5}."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        items = list(value.items())
    else:
        items = [tuple(part.split(":", 1)) if ":" in part else (part, None)
                 for part in re.split(r"[+,;\s]+", str(value)) if part.strip()]
    out: dict[int, int] = {}
    for a, b in items:
        try:
            out[int(a)] = int(b)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"neuron: sysfs_map must be MONITOR:SYSFS pairs joined by '+' like 0:4+1:5, "
                             f"not {value!r}") from None
        if out[int(a)] < 0 or int(a) < 0:
            raise InputError(f"neuron: sysfs_map indices must be >= 0, not {value!r}")
    if len(set(out.values())) != len(out):
        raise InputError(f"neuron: sysfs_map pairs two devices with the same sysfs neuron<N>: {value!r}")
    return out


def _span(indices: list[int]) -> str:
    return ", ".join(f"neuron{i}" for i in indices) if len(indices) <= 6 else \
        f"neuron{indices[0]}..neuron{indices[-1]} ({len(indices)})"


def match_devices(monitor: list[int] | None, sysfs: dict[int, SysfsDevice], *,
                  identities: dict[int, dict[str, str]] | None = None,
                  user_map: dict[int, int] | None = None) -> tuple[dict[int, int], str | None]:
    """Tie the devices neuron-monitor numbers to sysfs ``neuron<N>`` directories.

    Returns (device index -> sysfs index, a note when the pairing is partial or ambiguous).
    ``identities``: per neuron-monitor index, ``bdf`` / ``serial`` from ``neuron-ls -j``.
    """
    if monitor is None:
        return {i: i for i in sysfs}, None
    if user_map is not None:
        bad = sorted(s for s in user_map.values() if s not in sysfs)
        given = {m: s for m, s in user_map.items() if s in sysfs and m in monitor}
        note = f"sysfs paired by the sysfs_map option ({len(given)} device(s))"
        if bad:
            note += f"; no {_span(bad)} under the sysfs root"
        return given, note
    if not sysfs:
        return {}, None
    if set(monitor) == set(sysfs):
        return {i: i for i in monitor}, None
    if identities:
        by_bdf = {d.bdf: i for i, d in sysfs.items() if d.bdf}
        by_serial = {d.serial: i for i, d in sysfs.items() if d.serial}
        pairs: dict[int, int] = {}
        for m in monitor:
            ident = identities.get(m, {})
            s = by_bdf.get(normalise_bdf(ident.get("bdf")) or "") if ident.get("bdf") else None
            if s is None and ident.get("serial"):
                s = by_serial.get(str(ident["serial"]).strip().lower())
            if s is not None:
                pairs[m] = s
        if pairs:
            missing = sorted(set(monitor) - set(pairs))
            note = f"sysfs paired by PCI BDF / serial (neuron-ls -j): {len(pairs)} of {len(monitor)} device(s)"
            if missing:
                note += f"; no sysfs match for neuron:{', neuron:'.join(map(str, missing))}"
            return pairs, note
    return {}, (f"ambiguous device numbering: neuron-monitor reports {len(monitor)} device(s) numbered "
                f"{min(monitor)}..{max(monitor)}, sysfs shows {_span(sorted(sysfs))} (host-wide numbering, as in a "
                "container), and no identity ties them (neuron-monitor reports no PCI BDF or serial"
                + ("; neuron-ls -j gave none that matches" if identities is not None else "; neuron-ls not found")
                + "): sysfs power is not used; pass sysfs_map=MONITOR:SYSFS+... (e.g. 0:4+1:5) to pair them")


def read_neuron_ls(path: str, timeout_s: float = 10.0) -> tuple[dict[int, dict[str, str]] | None, str | None]:
    """``neuron-ls -j`` -> ({neuron_device: {"bdf": ..., "serial": ...}}, problem)."""
    try:
        out = subprocess.run([path, "-j"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"neuron-ls -j failed: {e}"
    if out.returncode != 0:
        return None, f"neuron-ls -j exited with {out.returncode}: {out.stderr.strip()[:200]}"
    try:
        data = json.loads(out.stdout)
    except json.JSONDecodeError as e:
        return None, f"neuron-ls -j printed no JSON ({e.msg})"
    found: dict[int, dict[str, str]] = {}
    for entry in data if isinstance(data, list) else []:
        if not isinstance(entry, dict) or isinstance(entry.get("neuron_device"), bool) \
                or not isinstance(entry.get("neuron_device"), int):
            continue
        ident = {k: str(entry[v]) for k, v in (("bdf", "bdf"), ("serial", "serial_number")) if entry.get(v)}
        found[entry["neuron_device"]] = ident
    return found, None

