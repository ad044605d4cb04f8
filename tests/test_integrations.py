"""Hugging Face Trainer and Lightning callbacks: real tiny models trained on CPU, measured by the
real NVML collector replaying the H100 trace."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import need

torch = need("torch")

from wattprof.reports.build import build_report  # noqa: E402
from wattprof.run import Run  # noqa: E402

SEQ = 8
VOCAB = 100


def padded_batches(n: int, batch: int = 2, seed: int = 0) -> list[dict]:
    """Token rows with padding at the end: row i has ``SEQ - (i % 3)`` real tokens."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n * batch):
        ids = torch.randint(1, VOCAB, (SEQ,), generator=g)
        mask = torch.ones(SEQ, dtype=torch.long)
        real = SEQ - (i % 3)
        mask[real:] = 0
        ids[real:] = 0
        labels = ids.clone()
        labels[real:] = -100
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return rows


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=SEQ))


def steps_of(run: Path) -> list[dict]:
    rows = []
    for f in sorted(run.glob("steps-*.jsonl")):
        rows += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return sorted(rows, key=lambda r: r["t_start"])


# ---- Hugging Face ---------------------------------------------------------------------------------

need("transformers")


def _trainer(tmp_path: Path, data: list[dict], *, steps: int, accumulate: int = 1, count: str = "no",
             extra_callbacks: list | None = None):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Slow(TrainerCallback):  # each optimizer step lasts >= 0.4 s, so the sampler flushes mid-run
        def on_step_end(self, args, state, control, **kw):
            time.sleep(0.4)

    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=steps, per_device_train_batch_size=2,
                             gradient_accumulation_steps=accumulate, logging_steps=1, report_to=[],
                             use_cpu=True, save_strategy="no", disable_tqdm=True, learning_rate=1e-3,
                             include_num_input_tokens_seen=count, dataloader_num_workers=0, seed=0)
    return Trainer(model=tiny_gpt2(), args=args, train_dataset=data,
                   callbacks=[Slow(), *(extra_callbacks or [])])


@pytest.mark.parametrize("count", ["no", "non_padding"])
def test_hf_trainer_one_step_per_optimizer_step_with_tokens_and_energy_in_logs(tmp_path, count):
    from wattprof.integrations.huggingface import WattprofCallback, add_to

    data = padded_batches(8)
    trainer = _trainer(tmp_path, data, steps=4, accumulate=2, count=count)
    cb = add_to(trainer, out=tmp_path / "run", collectors=["nvml-replay"], interval=0.05)
    assert trainer.callback_handler.callbacks[0] is cb and isinstance(cb, WattprofCallback)
    trainer.train()

    run = tmp_path / "run"
    steps = steps_of(run)
    assert [s["step"] for s in steps] == [1, 2, 3, 4]  # state.global_step: optimizer steps, not micro-batches
    assert all(s["label"] == "train" for s in steps)
    # two micro-batches of two rows per optimizer step; the sampler is seeded: order is the Trainer's,
    # so compare the total (every row counted once, padding excluded)
    expected = sum(int(r["attention_mask"].sum()) for r in data)
    assert sum(s["tokens"] for s in steps) == expected
    assert all(s["tokens"] > 0 for s in steps)
    assert all(s["t_end"] > s["t_start"] for s in steps)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "finished"

    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 4
    with_energy = [h for h in logged if "energy_j" in h]
    assert with_energy, trainer.state.log_history
    energies = [h["energy_j"] for h in with_energy]
    assert energies == sorted(energies) and energies[-1] > 0
    assert all(h["j_per_token"] > 0 for h in with_energy)
    assert any("power_w" in h and 50 < h["power_w"] < 1000 for h in with_energy), with_energy

    rep = build_report(Run.open(run))
    assert rep.steps == 4 and rep.tokens == expected
    assert rep.by_label["train"].energy_j > 0


def test_hf_trainer_keys_reach_callbacks_after_it(tmp_path):
    """A tracker (any callback after ours) sees energy_j in the logs it is handed."""
    from transformers import TrainerCallback

    from wattprof.integrations.huggingface import add_to

    seen: list[dict] = []

    class Tracker(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            seen.append(dict(logs or {}))

    trainer = _trainer(tmp_path, padded_batches(6), steps=6, extra_callbacks=[Tracker()])
    add_to(trainer, out=tmp_path / "run", collectors=["nvml-replay"], interval=0.05)
    trainer.train()
    assert any("energy_j" in s for s in seen), seen


def test_hf_exception_in_training_finalises_the_run_as_failed(tmp_path):
    from transformers import TrainerCallback

    from wattprof.integrations.huggingface import add_to

    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                raise RuntimeError("boom")

    trainer = _trainer(tmp_path, padded_batches(6), steps=6, extra_callbacks=[Boom()])
    add_to(trainer, out=tmp_path / "run", collectors=["nvml-replay"], interval=0.05)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "failed"
    assert [s["step"] for s in steps_of(tmp_path / "run")] == [1, 2]
    assert list((tmp_path / "run").glob("samples-*.parquet")), "finalised: samples compacted"


# ---- Lightning --------------------------------------------------------------------------------------


def _lightning_fit(tmp_path: Path, cb, *, steps: int, accumulate: int = 1, fail_at: int | None = None):
    L = need("lightning")
    from lightning.pytorch.loggers import CSVLogger

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = tiny_gpt2()

        def training_step(self, batch, batch_idx):
            if fail_at is not None and self.global_step == fail_at:
                raise RuntimeError("boom")
            time.sleep(0.2)
            loss = self.model(**batch).loss
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    data = padded_batches(steps * accumulate)
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=False)
    logger = CSVLogger(str(tmp_path / "logs"), name="t", version=0)
    trainer = L.Trainer(max_steps=steps, accumulate_grad_batches=accumulate, accelerator="cpu", devices=1,
                        logger=logger, log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[cb])
    trainer.fit(Tiny(), loader)
    return data, logger


def test_lightning_one_step_per_optimizer_step_with_tokens_and_logged_energy(tmp_path):
    need("lightning")
    from wattprof.integrations.lightning import WattprofCallback

    cb = WattprofCallback(out=tmp_path / "run", collectors=["nvml-replay"], interval=0.05)
    data, logger = _lightning_fit(tmp_path, cb, steps=4, accumulate=2)
    run = tmp_path / "run"
    steps = steps_of(run)
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    # in order (no shuffle): optimizer step k covers rows 4k..4k+3
    expected = [sum(int(r["attention_mask"].sum()) for r in data[4 * k:4 * k + 4]) for k in range(4)]
    assert [s["tokens"] for s in steps] == expected
    assert json.loads((run / "meta.json").read_text())["status"] == "finished"
    import csv

    rows = list(csv.DictReader((Path(logger.log_dir) / "metrics.csv").open()))
    energy = [float(r["energy_j"]) for r in rows if r.get("energy_j")]
    assert energy and energy[-1] > 0 and energy == sorted(energy), rows
    assert any(r.get("j_per_token") for r in rows)
    rep = build_report(Run.open(run))
    assert rep.steps == 4 and rep.tokens == sum(expected)


def test_lightning_per_batch_with_tokens_fn(tmp_path):
    need("lightning")
    from wattprof.integrations.lightning import WattprofCallback

    cb = WattprofCallback(out=tmp_path / "run", collectors=["nvml-replay"], interval=0.05, per="batch",
                          tokens_fn=lambda b: b["input_ids"].numel(), log_energy=False, label="lm")
    _lightning_fit(tmp_path, cb, steps=2, accumulate=2)
    steps = steps_of(tmp_path / "run")
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert [s["tokens"] for s in steps] == [2 * SEQ] * 4 and {s["label"] for s in steps} == {"lm"}


def test_lightning_exception_finalises_the_run(tmp_path):
    need("lightning")
    from wattprof.integrations.lightning import WattprofCallback

    cb = WattprofCallback(out=tmp_path / "run", collectors=["nvml-replay"], interval=0.05)
    with pytest.raises(RuntimeError, match="boom"):
        _lightning_fit(tmp_path, cb, steps=5, fail_at=2)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "failed"
    assert [s["step"] for s in steps_of(tmp_path / "run")] == [1, 2]


HF_DDP = """
import sys
sys.path.insert(0, {tests!r})
from test_integrations import padded_batches, tiny_gpt2
from transformers import Trainer, TrainingArguments
from wattprof.integrations.huggingface import add_to

args = TrainingArguments(output_dir={out!r}, max_steps=4, per_device_train_batch_size=2, logging_steps=1,
                         report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
trainer = Trainer(model=tiny_gpt2(), args=args, train_dataset=padded_batches(8))
add_to(trainer, collectors=["nvml-replay"], interval=0.05)
trainer.train()
"""


def test_hf_trainer_under_torchrun_two_ranks_one_run(tmp_path):
    """DDP on CPU (gloo): rank 0 picks the run directory, both ranks write their steps and count
    their own batches' tokens (the model is wrapped by DDP: the hook still sees every batch)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "hf_ddp.py"
    script.write_text(HF_DDP.format(tests=str(Path(__file__).parent), out=str(tmp_path / "hf")))
    env = dict(os.environ, WATTPROF_DIR=str(tmp_path / "runs"))
    env.pop("WATTPROF_RUN_DIR", None)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (run,) = list((tmp_path / "runs").iterdir())
    r = Run.open(run)
    assert r.meta["status"] == "finished" and list(r.meta["sources"]) == ["nvml-replay"]
    steps = r.steps
    assert sorted(zip(steps["rank"], steps["step"], strict=True)) == [(k, s) for k in (0, 1) for s in (1, 2, 3, 4)]
    # 2 ranks x 4 steps x 2 rows = every row once
    assert steps["tokens"].sum() == sum(int(x["attention_mask"].sum()) for x in padded_batches(8))
