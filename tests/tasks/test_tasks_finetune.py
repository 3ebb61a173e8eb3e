"""End-to-end fine-tuning on tiny synthetic data: overfit, save/load round trip, CLI."""

import json
import os
import random
import signal

import pytest
import torch
from conftest import SHARED_DATA, written_tokenizer

import maskedlm
from maskedlm.checkpoint import save_checkpoint
from maskedlm.cli import main
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining
from maskedlm.tasks import FinetuneConfig, TaskPredictor, finetune, load_task, make_task
from maskedlm.tasks.common import encode_words

DATA = SHARED_DATA
PEOPLE = ["jane villanueva", "peter blackburn", "anna smith", "rafael solano"]
PLACES = ["paris", "berlin", "lagos", "lima"]
FILLER = ["met", "the", "team", "in", "today", "and", "visited", "yesterday"]


def ner_sentences(n: int, seed: int = 0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        person, place = rng.choice(PEOPLE).split(), rng.choice(PLACES)
        words = person + rng.sample(FILLER, 2) + [place] + rng.sample(FILLER, 1)
        tags = ["B-PER"] + ["I-PER"] * (len(person) - 1) + ["O", "O", "B-LOC", "O"]
        out.append((words, tags))
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random 2-layer encoder (hidden 32) with a written vocabulary of the toy words."""
    d = tmp_path_factory.mktemp("tiny")
    # two names are split, so words have several subwords
    split = {"villanueva": ["villa", "##nueva"], "blackburn": ["black", "##burn"]}
    words = " ".join(PEOPLE + PLACES + FILLER + ["good", "bad", "film", "plot", "x"]).split()
    pieces = dict.fromkeys(p for w in words for p in split.get(w, [w]))
    tok = written_tokenizer(d, list(pieces))
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    save_checkpoint(d / "model", BertForPreTraining(cfg), tok)
    return d / "model", tok


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ner")
    for name, n, seed in (("train.txt", 24, 0), ("dev.txt", 8, 1)):
        (d / name).write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(ws, ts, strict=True))
                                          for ws, ts in ner_sentences(n, seed)) + "\n")
    return d


def fast(**kw) -> FinetuneConfig:
    # one dev evaluation, at the end: the tiny model trains in milliseconds a step
    base = dict(epochs=15, lr=3e-3, batch_size=8, max_length=32, warmup_ratio=0.0,
                eval_every=10**6, progress=False)
    base.update(kw)
    base.setdefault("head_lr", base["lr"])  # not the spans task's 5e-4: these tiny runs overfit
    return FinetuneConfig(**base)


def test_alignment_first_and_last_subwords(tiny_model):
    _, tok = tiny_model
    (enc,), cut = encode_words(tok, [["villanueva", "met", "\u200b"]], 32)
    pieces = tok.convert_ids_to_tokens(enc.input_ids)
    assert cut == 0 and pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert enc.first[0] == 1 and enc.last[0] >= enc.first[0]
    assert enc.first[1] == enc.last[0] + 1
    assert pieces[enc.first[2]] == "[UNK]"  # a word with no subwords keeps a slot
    (enc,), cut = encode_words(tok, [["jane"] * 40], 10)
    assert cut == 1 and enc.n_words == 8 and len(enc.input_ids) == 10


@pytest.mark.slow
@pytest.mark.parametrize("label_subwords", ["all", "first"])
def test_tag_overfits_and_round_trips(tiny_model, ner_files, tmp_path, label_subwords):
    model_dir, _ = tiny_model
    task = make_task("tag", label_subwords=label_subwords)
    # 25 epochs: 15 sometimes stopped just short of 0.9 when the toy vocabulary was trained
    summary = finetune(task, model_dir, ner_files / "train.txt", ner_files / "dev.txt",
                       tmp_path / "run", fast(epochs=25))
    assert summary["best"]["dev"]["f1"] > 0.9, summary["best"]
    m = load_task(tmp_path / "run")
    again = m.evaluate(ner_files / "dev.txt")
    assert again["f1"] == pytest.approx(summary["best"]["dev"]["f1"])
    pred = m.predict("Jane Villanueva visited Paris today")
    assert [(e["text"], e["label"]) for e in pred["entities"]] == [("Jane Villanueva", "PER"),
                                                                 ("Paris", "LOC")]
    assert pred["entities"][0]["start"] == 0 and pred["entities"][0]["end"] == 2
    m.max_length = 6  # cut sentences: their entities still count, as misses
    with pytest.warns(UserWarning, match="8 of 8 sentences exceed --max-length 6"):
        cut = m.evaluate(ner_files / "dev.txt")
    assert cut["recall"] < 0.9 and cut["examples"] == 8
    m.max_length = 32
    back = load_task(tmp_path / "run")
    assert back.predict_many(["anna smith met lima"]) == m.predict_many(["anna smith met lima"])
    via_load = maskedlm.load(tmp_path / "run")  # the one entry point knows fine-tuned runs
    assert isinstance(via_load, TaskPredictor)
    assert via_load.predict_many(["anna smith met lima"]) == m.predict_many(["anna smith met lima"])


@pytest.mark.slow
def test_spans_overfit_flat_and_round_trip(tiny_model, ner_files, tmp_path):
    model_dir, _ = tiny_model
    task = make_task("spans", flat=True, max_span_length=3, span_repr="attention")
    summary = finetune(task, model_dir, ner_files / "train.txt", ner_files / "dev.txt",
                       tmp_path / "run", fast(epochs=20))
    assert summary["best"]["dev"]["f1"] > 0.9, summary["best"]
    m = load_task(tmp_path / "run")
    out = m.predict(["rafael", "solano", "visited", "berlin"])
    assert [(e["start"], e["end"], e["label"]) for e in out["entities"]] == [(0, 2, "PER"), (3, 4, "LOC")]
    # identical logits after the round trip
    from maskedlm.tasks.common import run_batches

    feats = m.task.featurize(m.task.read(str(ner_files / "dev.txt")), m.tokenizer, 32)
    a = [o for _, _, o in run_batches(m.model, m.task, feats, 0, 4)]
    b = [o for _, _, o in run_batches(load_task(tmp_path / "run").model, m.task, feats, 0, 4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    cal = m.task.calibrate(m.model, m.task.read(str(ner_files / "dev.txt")), m.tokenizer, 32, 4)
    assert cal["threshold"] in (None, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert max(cal["f1"].values()) >= summary["best"]["dev"]["f1"]


@pytest.mark.parametrize("span_repr", ["boundary", "mean"])
def test_span_reprs_train(tiny_model, ner_files, tmp_path, span_repr):
    model_dir, _ = tiny_model
    task = make_task("spans", max_span_length=3, span_repr=span_repr, null_sample=0.5)
    summary = finetune(task, model_dir, ner_files / "train.txt", None, tmp_path / "run",
                       fast(epochs=3))
    assert summary["steps"] == 9 and (tmp_path / "run" / "head.safetensors").is_file()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_pair_classification_overfits(tiny_model, tmp_path, precision):
    model_dir, _ = tiny_model
    rows = ["sentence1\tsentence2\tlabel"]
    rng = random.Random(0)
    for _ in range(32):  # the label is in the second segment
        a, b = rng.choice(PLACES), rng.choice(["good", "bad"])
        rows.append(f"{a} film\t{b} plot\t{'yes' if b == 'good' else 'no'}")
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    task = make_task("pair")
    summary = finetune(task, model_dir, tmp_path / "train.tsv", tmp_path / "train.tsv",
                       tmp_path / "run", fast(epochs=25, batch_size=16, precision=precision))
    assert summary["best"]["dev"]["accuracy"] > 0.85, summary["best"]
    m = load_task(tmp_path / "run")
    assert m.predict(("lima film", "good plot"))["label"] == "yes"
    assert m.predict(("lima film", "bad plot"))["label"] == "no"


def test_freeze_encoder_trains_head_only(tiny_model, ner_files, tmp_path):
    model_dir, _ = tiny_model
    task = make_task("tag")
    s = finetune(task, model_dir, ner_files / "train.txt", None, tmp_path / "run",
                 fast(epochs=1, freeze="encoder"))
    assert s["trainable_parameters"] == 32 * 5 + 5  # O, B/I-LOC, B/I-PER


def test_unknown_dev_label_fails_before_training(tiny_model, ner_files, tmp_path):
    model_dir, _ = tiny_model
    (tmp_path / "dev.txt").write_text("jane B-ORG\n")
    with pytest.raises(MaskedLMError, match=r"dev.txt:1: word 1 \('jane'\) has tag 'B-ORG', not seen"):
        finetune(make_task("tag"), model_dir, ner_files / "train.txt", tmp_path / "dev.txt",
                 tmp_path / "run", fast(epochs=1))


@pytest.mark.slow
def test_cli_finetune_evaluate_predict(tiny_model, ner_files, tmp_path, capsys):
    model_dir, _ = tiny_model
    run = tmp_path / "run"
    rc = main(["finetune", "tag", "--model", str(model_dir), "--train", str(ner_files / "train.txt"),
               "--dev", str(ner_files / "dev.txt"), "--out", str(run), "--epochs", "15",
               "--lr", "3e-3", "--batch-size", "8", "--warmup-ratio", "0", "--no-progress"])
    assert rc == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(ner_files / "dev.txt"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"f1", "precision", "recall", "per_type", "examples"} <= set(metrics)
    assert 0.9 < metrics["f1"] <= 1 and metrics["examples"] == 8
    assert main(["predict", str(run), "peter blackburn visited lagos", "--json"]) == 0
    ents = json.loads(capsys.readouterr().out)["entities"]
    assert ents and set(ents[0]) == {"start", "end", "label", "score", "text"}


def test_cli_user_errors_exit_2(tiny_model, ner_files, tmp_path, capsys):
    model_dir, _ = tiny_model
    assert main(["evaluate", str(model_dir), "--data", str(ner_files / "dev.txt")]) == 2
    assert "no task head" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("jane\n")
    assert main(["finetune", "tag", "--model", str(model_dir), "--train", str(tmp_path / "bad.txt"),
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.txt:1: malformed line" in err and len(err.splitlines()) == 1
    assert main(["finetune", "spans", "--model", str(model_dir), "--train",
                 str(ner_files / "train.txt"), "--out", str(tmp_path / "r"),
                 "--freeze", "top:3", "--no-progress"]) == 2


@pytest.mark.data
def test_one_step_on_real_conll(tiny_model, tmp_path):
    model_dir, _ = tiny_model
    s = finetune(make_task("spans", flat=True), model_dir, DATA / "conll2003" / "dev.txt", None,
                 tmp_path / "run", fast(epochs=1, train_limit=8, max_length=64))
    assert s["steps"] == 1


@pytest.mark.slow
def test_mean_pooled_classification_overfits_and_round_trips(tiny_model, tmp_path):
    """--pool mean: the head reads the mean of the real tokens (padding excluded)."""
    from maskedlm.tasks.classify import ClassifierHead

    model_dir, _ = tiny_model
    rng = random.Random(1)
    rows = ["sentence\tlabel"] + [f"{rng.choice(PLACES)} {w} film\t{int(w == 'good')}"
                                  for w in rng.choices(["good", "bad"], k=32)]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    summary = finetune(make_task("classify", pool="mean"), model_dir, tmp_path / "train.tsv",
                       tmp_path / "train.tsv", tmp_path / "run", fast(epochs=25, batch_size=16))
    assert summary["best"]["dev"]["accuracy"] > 0.85, summary["best"]
    m = load_task(tmp_path / "run")
    assert m.task.pool == "mean" and m.model.head.pool == "mean"
    assert m.predict("lima good film")["label"] == "1" and m.predict("lima bad film")["label"] == "0"
    head = ClassifierHead(4, 2, 0.0, pool="mean")
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    torch.testing.assert_close(head(hidden, {"attention_mask": mask})[0],
                               head.out(hidden[0, :3].mean(0)))
    with pytest.raises(MaskedLMError):
        make_task("classify", pool="max")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_during_finetune_saves_and_resume_is_exact(tiny_model, ner_files, tmp_path,
                                                          monkeypatch, sig):
    """Stopped mid-epoch (after a dev evaluation), resumed: the same losses and dev scores."""
    from maskedlm.checkpoint import TRAINING_STATE_NAME
    from maskedlm.errors import Preempted
    from maskedlm.tasks.tag import TagTask

    model_dir, _ = tiny_model
    cfg = dict(epochs=3, eval_every=4, batch_size=4)  # 6 steps an epoch; dropout in the head
    args = (model_dir, ner_files / "train.txt", ner_files / "dev.txt")
    full_summary = finetune(make_task("tag"), *args, tmp_path / "full", fast(**cfg))
    real, calls = TagTask.collate, []

    def signal_at_step_9(self, feats, pad_id, rng):
        calls.append(rng is not None)  # training batches carry the generator, dev ones not
        if sum(calls) == 9:
            os.kill(os.getpid(), sig)
        return real(self, feats, pad_id, rng)

    monkeypatch.setattr(TagTask, "collate", signal_at_step_9)
    with pytest.raises(Preempted) as info:
        finetune(make_task("tag"), *args, tmp_path / "run", fast(**cfg))
    assert info.value.step == 9 and info.value.checkpoint == str(tmp_path / "run")
    assert (tmp_path / "run" / TRAINING_STATE_NAME).is_file()
    monkeypatch.undo()
    resume = True if sig == signal.SIGTERM else "auto"
    summary = finetune(make_task("tag"), *args, tmp_path / "run", fast(resume=resume, **cfg))
    def scores(best):
        return {k: v for k, v in best.items() if k != "train_examples_per_s"}
    assert scores(summary["best"]) == scores(full_summary["best"]) and summary["steps"] == 18
    assert not (tmp_path / "run" / TRAINING_STATE_NAME).exists()

    def history(run):
        return [(r["step"], r["epoch"], r["train_loss"], r["dev"]) for r in
                (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines())]
    assert history(tmp_path / "run") == history(tmp_path / "full")
    assert len(history(tmp_path / "run")) >= 1  # (records up to the best evaluation only)
    full, resumed = load_task(tmp_path / "full"), load_task(tmp_path / "run")
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_finetune_resume_without_state_is_a_user_error(tiny_model, ner_files, tmp_path):
    model_dir, _ = tiny_model
    with pytest.raises(MaskedLMError, match="no training_state.pt"):
        finetune(make_task("tag"), model_dir, ner_files / "train.txt", None, tmp_path / "run",
                 fast(epochs=1, resume=True))


@pytest.fixture(scope="module")
def tiny_modernbert(tiny_model, tmp_path_factory):
    """The same tokenizer under a random 3-layer ModernBERT (layer 0 global, 1-2 local
    with an 8-token window, shorter than the sentences)."""
    _, tok = tiny_model
    torch.manual_seed(0)
    cfg = ModelConfig(arch="modernbert", vocab_size=tok.vocab_size, hidden_size=32,
                      num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
                      max_position_embeddings=64, local_attention=8, nsp_head=False)
    path = tmp_path_factory.mktemp("mb") / "model"
    save_checkpoint(path, BertForPreTraining(cfg), tok)
    return path


@pytest.mark.slow
def test_modernbert_encoder_fine_tunes_and_round_trips(tiny_modernbert, ner_files, tmp_path):
    summary = finetune(make_task("tag"), tiny_modernbert, ner_files / "train.txt",
                       ner_files / "dev.txt", tmp_path / "run", fast(epochs=25, freeze="bottom:1"))
    assert summary["best"]["dev"]["f1"] > 0.9, summary["best"]
    m = load_task(tmp_path / "run")
    assert m.evaluate(ner_files / "dev.txt")["f1"] == pytest.approx(summary["best"]["dev"]["f1"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model_type"] == "modernbert"
