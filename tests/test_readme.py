"""README.md's first hour: two commands (demo with the core install only, then the tests), .ci/run
running exactly the README's test command, and a demo output block that is what the demo prints."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import wattprof

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
_NUM = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def first_blocks() -> tuple[list[str], str]:
    blocks = re.findall(r"```(\w*)\n(.*?)```", README, re.S)
    commands = next(body for lang, body in blocks if lang == "bash").strip().splitlines()
    demo = next(body for lang, body in blocks if lang == "" and "Energy:" in body)
    return commands, demo


def test_two_commands_the_first_installs_only_what_the_demo_needs():
    commands, _ = first_blocks()
    assert len(commands) == 2
    install_demo, install_test = commands
    assert "pip install -e ." in install_demo and "[" not in install_demo and install_demo.endswith("wattprof demo")
    assert "pip install -e '.[dev]'" in install_test and install_test.endswith("python -m pytest")


def test_ci_runs_exactly_the_readmes_test_command_and_installs_what_tests_need():
    commands, _demo = first_blocks()
    ci = [x.strip() for x in (REPO / ".ci" / "run").read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert ci[-1] == commands[1]
    text = "\n".join(ci)
    assert "apt-get install" in text and "chromium" in text
    assert "'torch==2.13.0'" in text and ".[hf,lightning]" in text


def test_readme_demo_block_is_what_the_demo_prints(tmp_path):
    _, block = first_blocks()
    out = wattprof("demo", "--out", str(tmp_path / "demo"), env={"COLUMNS": "100"}, check=True).stdout
    got = out.splitlines()
    want = [x for x in block.splitlines()]
    # the same lines, in order (numbers differ a little from run to run: the replay is timed)
    masked_got = [_NUM.sub("#", x) for x in got]
    k = 0
    for line in want:
        m = _NUM.sub("#", line)
        while k < len(masked_got) and masked_got[k] != m:
            k += 1
        assert k < len(masked_got), f"README line not printed by the demo: {line!r}"
        if line.startswith(("Energy:", "Steps:")):  # the totals: within 5 % between replays (timed replay, a loaded machine)
            nums_w = [float(n.replace(",", "")) for n in _NUM.findall(line)]
            nums_g = [float(n.replace(",", "")) for n in _NUM.findall(got[k])]
            for a, b in zip(nums_w, nums_g, strict=True):
                assert abs(a - b) <= 0.05 * max(abs(a), abs(b)), (line, got[k])
        k += 1
