"""The training loop: resume, accumulation, data parallelism, NaN handling."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maskedlm.errors import MaskedLMError
from maskedlm.pretrain import PretrainBatches, PretrainOptions, pretrain
from maskedlm.training import loop as train_module
from maskedlm.training.config import TrainConfig
from maskedlm.training.loop import Prefetcher


def opts(data, out, **kw) -> PretrainOptions:
    train_kw = {k: kw.pop(k) for k in list(kw) if k in TrainConfig.__dataclass_fields__}
    # fp32 and a linear schedule unless a test says otherwise (not the budget recipe's)
    tcfg = TrainConfig(**{"max_steps": 6, "batch_size": 4, "log_every": 1, "progress": False,
                          "lr": 2e-3, "precision": "fp32", "schedule": "linear", **train_kw})
    kw.setdefault("seq_len", 32)
    return PretrainOptions(data=str(data), out=str(out), size="tiny",
                           eval_sequences=8, device="cpu", train=tcfg, **kw)


def losses(out: Path) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in lines if "loss" in r]


@pytest.mark.parametrize("recipe", ["budget", "spanbert", "bert", "roberta"])
def test_pretrain_logs_and_learns(tiny_data, tmp_path, recipe):
    rec = pretrain(opts(tiny_data["shards"], tmp_path / "run", recipe=recipe, max_steps=40,
                        lr=5e-3))
    log = losses(tmp_path / "run")
    assert [s for s, _ in log] == list(range(1, 41))
    first, last = (sum(v for _, v in part) / 5 for part in (log[:5], log[-5:]))
    assert last < first - 0.1
    assert 0.0 <= rec["eval_mlm_accuracy"] <= 1.0 and rec["eval_perplexity"] > 1.0
    keys = set(json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[0]))
    assert {"step", "loss", "mlm_loss", "lr", "tokens", "tokens_per_s"} <= keys
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert all(0 < r["tokens"] <= 4 * 32 for r in lines if "tokens" in r)  # one step per line
    if importlib.util.find_spec("matplotlib"):  # the plot extra: curves at the end of a run
        assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    assert ("sbo_loss" in keys) == (recipe == "spanbert")
    assert ("nsp_loss" in keys) == (recipe == "bert")


def test_resume_reproduces_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    full = tmp_path / "full"
    pretrain(opts(tiny_data["shards"], full, save_every=3))
    killed = tmp_path / "killed"
    real = train_module.optimizer_step

    def crash_in_step_4(model, optimizer, scheduler, clip, step):
        if step == 3:  # 0-based: the process dies in step 4, after the step-3 checkpoint
            raise KeyboardInterrupt
        return real(model, optimizer, scheduler, clip, step)

    # The crash is in the loop itself, not in the batch source: a prefetching source builds
    # step 4's batches while step 1 runs, so a crash there would come before any checkpoint.
    monkeypatch.setattr(train_module, "optimizer_step", crash_in_step_4)
    with pytest.raises(KeyboardInterrupt):
        pretrain(opts(tiny_data["shards"], killed, save_every=3))
    monkeypatch.setattr(train_module, "optimizer_step", real)
    assert losses(killed) == losses(full)[:3]  # steps 1-3 logged as uninterrupted, then the crash
    pretrain(opts(tiny_data["shards"], killed, save_every=3, resume=True))
    assert losses(killed) == losses(full)


@pytest.mark.parametrize("recipe", ["budget", "spanbert", "bert"])
def test_grad_accumulation_equals_one_big_batch(tiny_data, tmp_path, recipe):
    """Also with packed sequences of different lengths (budget/roberta), whose padding
    differs between a batch of 8 and two of 4: masking must not see the padding."""
    pretrain(opts(tiny_data["shards"], tmp_path / "big", batch_size=8, dropout=0.0, recipe=recipe))
    pretrain(opts(tiny_data["shards"], tmp_path / "acc", batch_size=4, grad_accum=2, dropout=0.0,
                  recipe=recipe))
    for (s1, a), (s2, b) in zip(losses(tmp_path / "big"), losses(tmp_path / "acc"), strict=True):
        assert s1 == s2 and a == pytest.approx(b, rel=1e-4)


def test_resume_without_checkpoint_is_a_user_error(tiny_data, tmp_path):
    with pytest.raises(MaskedLMError, match="no checkpoint"):
        pretrain(opts(tiny_data["shards"], tmp_path / "none", resume=True))


def test_seq_len_beyond_position_table(tiny_data, tmp_path):
    from maskedlm.checkpoint import save_checkpoint
    from maskedlm.data.tokenizer import Tokenizer
    from maskedlm.models.config import ModelConfig
    from maskedlm.models.heads import BertForPreTraining

    tok = Tokenizer.load(tiny_data["tokenizer"])
    cfg = ModelConfig.from_name("tiny", vocab_size=tok.vocab_size, max_position_embeddings=64)
    save_checkpoint(tmp_path / "ck", BertForPreTraining(cfg), tok)
    o = opts(tiny_data["shards"], tmp_path / "r", init=str(tmp_path / "ck"))
    o.seq_len = 100
    with pytest.raises(MaskedLMError, match="position table"):
        pretrain(o)


def test_nan_loss_stops_with_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(MaskedLMError, match="NaN"):
        pretrain(opts(tiny_data["shards"], tmp_path / "nan", lr=1e30, max_steps=20, warmup_ratio=0.0))
    assert not (tmp_path / "nan/checkpoint").exists()


TORCHRUN_ARGS = ["pretrain", "--size", "tiny", "--seq-len", "32", "--log-every", "1",
                 "--dropout", "0", "--device", "cpu", "--no-progress", "--eval-sequences", "8",
                 "--lr", "2e-3"]


def torchrun(out: Path, *args: str, restarts: int = 0, env: dict | None = None, entry=None):
    """A 2-process CPU (gloo) torchrun job; returns the CompletedProcess and the rank logs.
    --standalone: a free port for the rendezvous; each rank's own output goes to --log-dir
    so a failing rank's message is shown, not only torchrun's summary."""
    logs = out.parent / f"{out.name}-logs"
    target = ["-m", "maskedlm.cli"] if entry is None else [str(entry)]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", f"--max-restarts={restarts}", "--log-dir",
                           str(logs), "--redirects", "3", *target, *TORCHRUN_ARGS, *args,
                           "--out", str(out)],
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                          capture_output=True, text=True)
    rank_logs = "".join(f"--- {p.relative_to(logs)}\n{p.read_text()[-3000:]}"
                        for p in sorted(logs.rglob("std*.log")))
    return proc, rank_logs + proc.stderr[-1500:]


@pytest.fixture(scope="module")
def ddp_run(tiny_data, tmp_path_factory):
    """An uninterrupted 2-process run: 30 steps of 2 x 4 sequences, a checkpoint every 10."""
    out = tmp_path_factory.mktemp("ddp") / "two"
    proc, logs = torchrun(out, "--data", str(tiny_data["shards"]), "--batch-size", "4",
                          "--max-steps", "30", "--save-every", "10")
    assert proc.returncode == 0, logs
    return losses(out)


@pytest.mark.slow
def test_two_process_torchrun_matches_single_process(tiny_data, tmp_path, ddp_run):
    single = subprocess.run([sys.executable, "-m", "maskedlm.cli", *TORCHRUN_ARGS, "--data",
                             str(tiny_data["shards"]), "--batch-size", "8", "--max-steps", "30",
                             "--out", str(tmp_path / "one")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    one = losses(tmp_path / "one")
    assert len(one) == len(ddp_run) == 30
    for i, ((s1, a), (s2, b)) in enumerate(zip(one, ddp_run, strict=True)):
        # float sums in another order drift apart slowly over the steps
        assert s1 == s2 and a == pytest.approx(b, rel=1e-4 if i < 4 else 1e-3)


@pytest.mark.slow
def test_torchrun_restarts_a_killed_rank_and_resume_auto_ends_as_uninterrupted(
        tiny_data, tmp_path, ddp_run):
    """Rank 1 is SIGKILLed near step 25; torchrun --max-restarts restarts the job with the
    same command line, whose --resume auto continues from the step-20 checkpoint."""
    worker = Path(__file__).with_name("torchrun_worker.py")
    out = tmp_path / "elastic"
    proc, logs = torchrun(out, "--data", str(tiny_data["shards"]), "--batch-size", "4",
                          "--max-steps", "30", "--save-every", "10", "--resume", "auto",
                          restarts=1, env={"DIE_AT_STEP": "25"}, entry=worker)
    assert proc.returncode == 0, logs
    assert "no checkpoint in" in logs and f"resuming from {out / 'checkpoint'}" in logs, logs
    assert losses(out) == ddp_run  # identical, not only close: same ranks, same order


@pytest.mark.data
def test_multilingual_sampling_on_real_sentences(tmp_path, capsys):
    from conftest import shared_data

    from maskedlm.cli import main

    root = shared_data("multilingual_text")
    langs = ["en", "fr", "fi", "de", "cy", "wo"]
    corpus = []
    for lang in langs:
        corpus += ["--corpus", f"{lang}={root / (lang + '.txt')}"]
    code = main(["pretrain", *corpus, "--one-doc-per-line", "--vocab-size", "2000",
                 "--out", str(tmp_path / "ml"), "--max-steps", "2", "--batch-size", "4",
                 "--seq-len", "32", "--no-progress", "--eval-sequences", "4"])
    assert code == 0
    err = capsys.readouterr().err
    assert "languages (p = share of sentences" in err
    run = json.loads((tmp_path / "ml/run.json").read_text())
    shares = run["languages"]["languages"]
    assert set(shares) == set(langs)
    p = {k: v["p"] for k, v in shares.items()}
    q = {k: v["q"] for k, v in shares.items()}
    assert sum(p.values()) == pytest.approx(1.0) and sum(q.values()) == pytest.approx(1.0)
    z = sum(v ** 0.3 for v in p.values())
    for k in langs:
        assert q[k] == pytest.approx(p[k] ** 0.3 / z, abs=1e-5)
    smallest = min(p, key=p.get)
    assert q[smallest] > p[smallest]  # low-resource languages are upweighted


def test_init_with_shards_of_another_tokenizer_is_an_error(tiny_data, tmp_path):
    from maskedlm.checkpoint import save_checkpoint
    from maskedlm.data.corpus import iter_documents
    from maskedlm.data.shards import prepare_shards
    from maskedlm.data.tokenizer import Tokenizer, train_tokenizer
    from maskedlm.models.config import ModelConfig
    from maskedlm.models.heads import BertForPreTraining

    tok = Tokenizer.load(tiny_data["tokenizer"])
    save_checkpoint(tmp_path / "ck", BertForPreTraining(
        ModelConfig.from_name("tiny", vocab_size=tok.vocab_size)), tok)
    other = train_tokenizer(iter_documents([str(tiny_data["corpus"])]), vocab_size=100,
                            show_progress=False)
    other.save(tmp_path / "tok2")
    shards = prepare_shards([str(tiny_data["corpus"])], tmp_path / "tok2", tmp_path / "sh2",
                            show_progress=False)
    with pytest.raises(MaskedLMError, match="different tokenizer"):
        pretrain(opts(shards, tmp_path / "r", init=str(tmp_path / "ck")))


def test_linear_schedule_by_steps_and_by_time():
    from maskedlm.training.optim import linear_schedule

    f = linear_schedule(10, 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5) and f(100) == 0.0
    used = [0.0]
    g = linear_schedule(600, 10_000, lambda: used[0])  # time runs out long before the steps
    used[0] = 0.03
    assert g(5) == pytest.approx(0.5)
    used[0] = 0.53
    assert g(6) == pytest.approx(0.5)
    used[0] = 1.0
    assert g(7) == 0.0


def test_prefetcher_close_stops_and_joins_its_thread():
    class Slow:  # any object with step_batches(step) is a batch source
        def step_batches(self, step):
            time.sleep(0.01)
            return [{"step": step}]

    pf = Prefetcher(Slow(), 0, 10**6, depth=2)
    first = next(iter(pf))
    assert first == [{"step": 0}]
    time.sleep(0.05)  # the queue fills and the thread blocks on put()
    pf.close()
    assert not pf.thread.is_alive()


def test_wsd_schedule_is_stable_then_decays_as_one_minus_sqrt():
    from maskedlm.training.optim import linear_schedule, lr_shape

    f = linear_schedule(10, 100, kind="wsd", decay=0.2)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(50) == 1.0 and f(80) == 1.0  # stable until the last 20%
    assert f(85) == pytest.approx(1 - 0.25 ** 0.5) and f(100) == 0.0
    assert all(f(s) >= f(s + 1) for s in range(10, 100))  # never rises after warmup
    used = [0.9]  # by time: 90% of the budget used -> halfway through the decay
    g = linear_schedule(60, 10_000, lambda: used[0], kind="wsd", decay=0.2)
    assert g(5) == pytest.approx(1 - 0.5 ** 0.5)
    assert lr_shape(0.5, 0.1) == pytest.approx(0.5 / 0.9)  # linear: unchanged


def test_budget_recipe_defaults_and_standard_eval_masking(tiny_data, tmp_path):
    """budget: pre-LN, no dropout, roberta's sequences, 30% masking in training and the
    standard 15% on the held-out batches, so accuracy compares across masking rates."""
    from maskedlm.data.tokenizer import Tokenizer
    from maskedlm.pretrain import masking_config
    from maskedlm.training.dist import DistInfo

    o = opts(tiny_data["shards"], tmp_path / "run", recipe="budget")
    assert o.pre_layer_norm is True and o.dropout == 0.0
    assert masking_config(o).mask_prob == 0.3 and masking_config(o, for_eval=True).mask_prob == 0.15
    from maskedlm.data.shards import ShardSet
    shards = ShardSet.load(tiny_data["shards"])
    src = PretrainBatches(shards, "budget", 32, masking_config(o), Tokenizer.load(tiny_data["tokenizer"]),
                          16, 1, 0, DistInfo(), 64, masking_config(o, for_eval=True))

    def share(batches):
        targets = sum(int((b["labels"] != -100).sum()) for b in batches)
        maskable = sum(int((~b["special"]).sum()) for b in batches)
        return targets / maskable
    assert share(src.step_batches(0)) == pytest.approx(0.3, abs=0.03)
    assert share(src.eval_batches()) == pytest.approx(0.15, abs=0.03)
    assert all("sbo_left" not in b and "next_sentence_label" not in b for b in src.step_batches(1))
    rec = pretrain(opts(tiny_data["shards"], tmp_path / "run", recipe="budget", max_steps=3))
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["model"]["pre_layer_norm"] is True and run["model"]["hidden_dropout_prob"] == 0.0
    assert "eval_mlm_accuracy" in rec


def test_auto_precision_follows_the_hardware():
    import torch

    from maskedlm.training.precision import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    # An independent reading of the hardware: the CPU flags the kernel reports.
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    else:
        pytest.skip("no /proc/cpuinfo to check the CPU's bf16 support against")
    native = bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})
    assert native_bf16(cpu) is native
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert resolve_precision("auto", torch.device("meta")) == "fp32"  # neither CPU nor CUDA
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(MaskedLMError):
        TrainConfig(precision="fp16")


def test_unigram_baseline_is_the_most_frequent_token_of_the_corpus(tiny_data, tmp_path):
    # Counted independently: the tokenizer over the raw corpus (train and held-out documents
    # together, so the shares agree to about a point, not exactly).
    from collections import Counter

    from maskedlm.data.tokenizer import Tokenizer
    from maskedlm.pretrain import unigram_baseline

    pretrain(opts(tiny_data["shards"], tmp_path / "run", max_steps=1))
    tok = Tokenizer.load(tiny_data["tokenizer"])
    counts: Counter[int] = Counter()
    for line in tiny_data["corpus"].read_text().splitlines():
        if line.strip():
            ids = tok.encode(line)["input_ids"]
            counts.update(int(i) for i in ids if int(i) not in tok.special_ids)
    top, n = counts.most_common(1)[0]
    token, share = unigram_baseline(tmp_path / "run")
    assert token == tok.convert_ids_to_tokens([top])[0]
    assert share == pytest.approx(n / sum(counts.values()), abs=0.01)


def test_the_time_spent_evaluating_is_logged(tiny_data, tmp_path, monkeypatch):
    """eval_s: the seconds of held-out evaluation so far, beside the wall clock (a tiny
    model scores its 8 sequences in milliseconds: each evaluation is made 0.2 s longer)."""
    import time

    import maskedlm.training.loop as loop

    real = loop.evaluate

    def slow(*args, **kw):
        time.sleep(0.2)
        return real(*args, **kw)

    monkeypatch.setattr(loop, "evaluate", slow)
    pretrain(opts(tiny_data["shards"], tmp_path / "run", max_steps=4, eval_every=2))
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    timed = [r for r in lines if "eval_s" in r]
    evaluated = [r for r in timed if "eval_mlm_accuracy" in r]  # steps 2 and 4 (+ step 0)
    assert [r["step"] for r in evaluated] == [2, 4]
    assert evaluated[0]["eval_s"] >= 0.4 and evaluated[1]["eval_s"] >= 0.6  # step 0 counts too
    assert all(r["eval_s"] <= r["elapsed_s"] for r in timed)
