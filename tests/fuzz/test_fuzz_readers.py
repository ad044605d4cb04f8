"""Property: every reader of outside input either parses it or raises the error it promises
(InputError; RunError for run directories, or drops the damage with a warning): never another
exception. Inputs: mutated real captures (tests/fuzz/fuzzkit.py). The default run tries 50
derandomized examples per reader, ``pytest --slow`` (CI) 200 (``WATTPROF_FUZZ_EXAMPLES``);
``benchmarks/fuzz.py --examples 10000`` runs the same targets at length."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fuzzkit import CI_EXAMPLES, fuzz_settings, run_target, targets
from hypothesis import given

TARGETS = targets()
#: examples per target in CI; reporting a damaged run renders it too (slower)
EXAMPLES = {"run-dir-report": max(CI_EXAMPLES // 4, 10), "meta-report": max(CI_EXAMPLES // 10, 10),
            "nvml-trace-import": max(CI_EXAMPLES // 2, 10), "cli-options": max(CI_EXAMPLES // 2, 10)}


def _property(name: str):
    target = TARGETS[name]
    work = Path(tempfile.mkdtemp(prefix=f"wattprof-fuzz-{name}-"))

    @fuzz_settings(EXAMPLES.get(name, CI_EXAMPLES))
    @given(target.strategy)
    def check(data):
        outcome = run_target(target, data, work)
        assert outcome.kind != "unexpected", f"{name}: {type(outcome.error).__name__}: {outcome.error}\n{outcome.trace}"

    return check


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_reader_parses_or_raises_its_own_error(name):
    """Guarantee: a reader never fails with anything but its documented error, whatever the input
    (truncated, garbled, hostile values, not UTF-8, deeply nested JSON, damaged binary files)."""
    _property(name)()
