"""A user's mistake gets one line naming the file/line/field and what was expected, exit status 2,
never a traceback."""

from __future__ import annotations

import pytest
from conftest import wattprof


def assert_one_line_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_missing_samples_file(tmp_path):
    p = wattprof("import", str(tmp_path / "run"), "--samples", str(tmp_path / "nope.csv"))
    assert_one_line_error(p, "nope.csv", "not found")
    assert not (tmp_path / "run").exists()  # nothing half-created


def test_steps_line_that_is_not_json(tmp_path):
    f = tmp_path / "steps.jsonl"
    f.write_text('{"t_start": 1, "t_end": 2}\n{"t_start": 3, "t_end": \n')
    p = wattprof("import", str(tmp_path / "run"), "--steps", str(f))
    assert_one_line_error(p, "steps.jsonl:2", "not JSON")


def test_t_end_before_t_start(tmp_path):
    f = tmp_path / "steps.jsonl"
    f.write_text('{"t_start": 10, "t_end": 11}\n\n{"t_start": 5, "t_end": 4, "label": "x"}\n')
    p = wattprof("import", str(tmp_path / "run"), "--steps", str(f))
    assert_one_line_error(p, "steps.jsonl:3", "before t_start")


def test_unknown_collector():
    p = wattprof("record", "--collector", "nosuch", "--", "true")
    assert_one_line_error(p, "unknown collector 'nosuch'", "known:")


@pytest.mark.parametrize("args,needle", [
    (["report", "/nonexistent/run"], "not a directory"),
    (["record", "--tag", "novalue", "--", "true"], "KEY=VALUE"),
    (["import", "/tmp/x"], "nothing to import"),
])
def test_other_usage_errors(args, needle):
    assert_one_line_error(wattprof(*args), needle)


def test_samples_with_unknown_header(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("a,b,c\n1,2,3\n")
    p = wattprof("import", str(tmp_path / "run"), "--samples", str(f))
    assert_one_line_error(p, "s.csv:1", "--samples-format")
    assert not (tmp_path / "run").exists()


def test_report_on_a_directory_that_is_not_a_run(tmp_path):
    assert_one_line_error(wattprof("report", str(tmp_path)), "meta.json")
