"""Inputs the fuzzers (tests/fuzz/fuzzkit.py, benchmarks/fuzz.py) found to break a reader, kept
as plain tests. Each must be rejected with InputError (never another exception, never a hang).

"""

from __future__ import annotations

import json

import pytest

from wattprof.errors import InputError

DEEP = "[" * 100_000  # nesting deeper than the interpreter's recursion limit
HUGE = "1" + "0" * 400  # an integer too large for a float



def _file(tmp_path, name: str, data: str | bytes):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


# ---- steps JSONL ------------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [DEEP, '{"t_start": ' + HUGE + ', "t_end": 2}'], ids=["deep", "huge-int"])
def test_steps_jsonl(tmp_path, line):
    from wattprof.formats.steps_jsonl import read_steps_jsonl

    with pytest.raises(InputError):
        read_steps_jsonl(_file(tmp_path, "s.jsonl", line + "\n"))


def test_steps_in_a_run_directory_are_read_past_bad_lines(tmp_path):
    """The run reader (run.py) skips such lines with a warning and keeps the others."""
    from wattprof.run import Run, RunWriter

    RunWriter.create(tmp_path / "r")
    good = json.dumps({"t_start": 1.0, "t_end": 2.0, "tokens": 3})
    (tmp_path / "r" / "steps-0-1.jsonl").write_text(
        "\n".join([good, DEEP, '{"t_start": ' + HUGE + ', "t_end": 2}', good]) + "\n")
    run = Run.open(tmp_path / "r")
    assert len(run.steps) == 2 and len(run.warnings) == 2


# ---- nvidia-smi CSV -----------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "2026/11/22 11:25:40.970, 0, 100.0 W, 0x" + "f" * 40,  # a bitmask wider than a float
    "2026/11/22 11:25:40.970, 0\x00, 100.0 W, 0x0",  # NUL: numpy's == never matches it
    "2026/11/22 11:25:40.970, \u00b2, 100.0 W, 0x0",  # "²".isdigit() but int("²") fails
], ids=["hex-overflow", "nul-in-index", "unicode-digit"])
def test_nvidia_smi_line_parser(line):
    from wattprof.formats.nvidia_smi_csv import LineParser

    lp = LineParser(["timestamp", "index", "power.draw", "clocks_event_reasons.active"])
    with pytest.raises(InputError):
        lp.parse(line)


def test_nvidia_smi_csv_number_too_large(tmp_path):
    from wattprof.formats.nvidia_smi_csv import parse_csv

    text = "timestamp, power.draw [W]\n2026/11/22 11:25:40.970, " + HUGE + " W\n"
    with pytest.raises(InputError):
        parse_csv(_file(tmp_path, "smi.csv", text))


# ---- neuron-monitor --------------------------------------------------------------------------------------

def test_neuron_monitor_nested_too_deeply(tmp_path):
    from wattprof.formats.neuron_monitor import read_neuron_monitor_jsonl

    with pytest.raises(InputError, match="nested too deeply"):
        read_neuron_monitor_jsonl(_file(tmp_path, "n.jsonl", DEEP + "\n"))


@pytest.mark.parametrize("line, info", [
    ('{"neuron_hardware_info": {"neuroncore_per_device_count": ' + HUGE + "}}",
     {"neuroncore_per_device_count": int(HUGE)}),
    ('{"neuron_hardware_info": {"neuron_device_count": Infinity}}', {"neuron_device_count": float("inf")}),
    ('{"neuron_runtime_data": 5}', {}),
    ('{"system_data": {"memory_info": {"period": ' + HUGE + "}}}", {}),
], ids=["huge-int", "infinite-count", "not-a-list", "huge-period"])
def test_neuron_monitor_absurd_values_give_a_report_without_samples(tmp_path, line, info):
    """These crashed the reader; they are read as one report that measured nothing (no devices are
    made up from an absurd count, no period from an absurd one)."""
    from wattprof.formats.neuron_monitor import read_neuron_monitor_jsonl

    log = read_neuron_monitor_jsonl(_file(tmp_path, "n.jsonl", line + "\n"))
    assert len(log.reports) == 1
    r = log.reports[0]
    assert r.samples == [] and r.errors == [] and r.period_s is None and r.info == info


def test_neuron_monitor_absurd_device_count_is_not_a_denial_of_service():
    """`neuron_device_count: 1e12` made the parser build a set of 10^12 device ids (hours, then
    out of memory). It must return (well within the join's generous limit) with no samples."""
    import threading

    from wattprof.formats.neuron_monitor import parse_report

    out: list = []
    worker = threading.Thread(target=lambda: out.append(parse_report(
        {"neuron_hardware_info": {"neuron_device_count": 1e12, "neuron_device_memory_size": 1}})), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert out, "parse_report did not return: it enumerates the devices of an absurd count"
    samples, _ = out[0]
    assert len(samples) == 0


# ---- vLLM bench -------------------------------------------------------------------------------------------

VLLM = {"date": "20250101-120000", "duration": 10.0, "completed": 1, "total_input_tokens": 5,
        "total_output_tokens": 7}


@pytest.mark.parametrize("text", [DEEP, json.dumps(VLLM).replace("10.0", HUGE)], ids=["deep", "huge-int"])
def test_vllm_bench(tmp_path, text):
    from wattprof.formats.vllm_bench import read_vllm_bench

    with pytest.raises(InputError):
        read_vllm_bench(_file(tmp_path, "r.json", text))


# ---- gpm-csv, nvml-trace-csv ------------------------------------------------------------------------------

def test_gpm_csv_header_with_a_tab(tmp_path):
    from wattprof.formats.gpm_csv import read_gpm_csv

    df = read_gpm_csv(_file(tmp_path, "g.csv", "t_start,t_end,\tsm_util\n1,2,50\n"))
    assert list(df["sm_active_pct"]) == [50.0]


def test_nvml_trace_not_utf8(tmp_path):
    from wattprof.formats.nvml_trace import read_nvml_trace

    with pytest.raises(InputError, match="not UTF-8"):
        read_nvml_trace(_file(tmp_path, "t.csv", b"\xfft,energy_mj\n1,2\n"))


def test_nvml_trace_header_with_a_space(tmp_path):
    from wattprof.formats.nvml_trace import read_nvml_trace

    trace = read_nvml_trace(_file(tmp_path, "t.csv", b" t,energy_mj\n1,2\n"))
    assert list(trace.gpus) == [0]
    assert trace.gpus[0][["t", "energy_mj"]].to_dict("records") == [{"t": 1.0, "energy_mj": 2.0}]


# ---- run directories (fixed in run.py) ----------------------------------------------------------------------

def test_parquet_with_a_damaged_string_is_skipped_with_a_warning(tmp_path):
    """A bit flip inside a device name left invalid UTF-8 that pyarrow only noticed when pandas
    sorted the frame (ArrowException); run.py now validates each file when reading it."""
    import pyarrow as pa

    from wattprof.run import Run, RunWriter, write_parquet

    w = RunWriter.create(tmp_path / "r")
    write_parquet(pa.table({"t": [1.0, 2.0], "device": ["host", "host"], "power_w": [1.0, 2.0]}),
                  tmp_path / "r" / "samples-a.parquet")
    write_parquet(pa.table({"t": [1.0, 2.0], "device": ["gpu:0", "gpu:0"], "power_w": [1.0, 2.0]}),
                  tmp_path / "r" / "samples-b.parquet")
    w.finalize(status="finished")
    p = tmp_path / "r" / "samples-a.parquet"
    p.write_bytes(p.read_bytes().replace(b"host", b"h\xf3st"))
    run = Run.open(tmp_path / "r")
    assert list(run.samples["device"].unique()) == ["gpu:0"]
    assert any("samples-a.parquet" in w for w in run.warnings)


def test_meta_with_fields_of_the_wrong_type_is_read_with_warnings(tmp_path):
    from wattprof.reports.build import build_report
    from wattprof.run import Run, RunWriter

    w = RunWriter.create(tmp_path / "r")
    w.meta.update(devices={"gpu:0": {"power_limit_w": "lots"}, "gpu:1": 5}, tags=[1, 2], sources="x",
                  started_at=10**400, name=["x"])
    w.write_meta()
    run = Run.open(tmp_path / "r")
    assert run.meta["devices"] == {"gpu:0": {"power_limit_w": None}}
    assert run.meta["tags"] == {} and run.meta["sources"] == {} and run.meta["started_at"] is None
    assert len(run.warnings) >= 5
    build_report(run)
