"""Extractive QA: SQuAD reading, windows and offsets, official scoring, training, export."""

import json
import random

import numpy as np
import pytest
import torch
from conftest import shared_data, written_tokenizer

import maskedlm
from maskedlm.checkpoint import save_checkpoint
from maskedlm.cli import main
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining
from maskedlm.tasks import FinetuneConfig, finetune, load_task, make_task
from maskedlm.tasks.data import QAExample, read_squad
from maskedlm.tasks.qa import (
    best_span,
    char_to_tokens,
    exact_match,
    normalize_answer,
    squad_scores,
    token_f1,
    windows,
)

PEOPLE = ["Rollo", "Richard", "William", "Emma", "Robert", "Tancred"]
PLACES = ["Normandy", "Sicily", "Rouen", "Bari", "Antioch", "Paris"]
VERBS = ["ruled", "visited", "left", "defended"]


def squad_json(n_paragraphs: int, seed: int, impossible: bool = False) -> dict:
    """Paragraphs of 'P1 ruled X. P2 visited Y.' with who / where questions.
    ``impossible`` adds, per paragraph, a question about a person who is not in it."""
    rng = random.Random(seed)
    articles = []
    for a in range(2):
        paragraphs = []
        for p in range(n_paragraphs):
            people, places = rng.sample(PEOPLE, 3), rng.sample(PLACES, 2)
            verbs = rng.sample(VERBS, 2)
            s1 = f"{people[0]} {verbs[0]} {places[0]} for many years."
            s2 = f"Later, {people[1]} {verbs[1]} {places[1]}."
            context = f"{s1} {s2}"
            qas = [
                {"id": f"{seed}-{a}-{p}-who", "question": f"Who {verbs[1]} {places[1]}?",
                 "answers": [{"text": people[1], "answer_start": context.index(people[1])}]},
                {"id": f"{seed}-{a}-{p}-what", "question": f"What did {people[0]} {verbs[0].rstrip('d')}?",
                 "answers": [{"text": places[0], "answer_start": context.index(places[0])}]},
            ]
            if impossible:
                qas.append({"id": f"{seed}-{a}-{p}-none", "question": f"What did {people[2]} rule?",
                            "answers": [], "is_impossible": True})
            paragraphs.append({"context": context, "qas": qas})
        articles.append({"title": f"Article_{seed}_{a}", "paragraphs": paragraphs})
    return {"version": "v2.0" if impossible else "1.1", "data": articles}


@pytest.fixture(scope="module")
def tiny_qa_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("qa")
    words = PEOPLE + PLACES + VERBS + "who what did rule for many years later".split()
    pieces = sorted({w.lower() for w in words} | {w.lower().rstrip("d") for w in VERBS})
    tok = written_tokenizer(d, ["?", ".", ",", *pieces])
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    save_checkpoint(d / "model", BertForPreTraining(cfg), tok)
    for name, n, seed, imp in (("train.json", 4, 0, False), ("v2.json", 4, 0, True)):
        (d / name).write_text(json.dumps(squad_json(n, seed, imp)))
    return d


def write(path, obj) -> str:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


# ----------------------------------------------------------------------------- scoring
def test_official_normalisation_and_scores():
    assert normalize_answer("The  Normans, of   Normandy!") == "normans of normandy"
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_match("the Normans", "Normans.") == 1.0
    assert token_f1("Normans of France", "the Normans") == pytest.approx(0.5)  # p 1/3, r 1
    assert token_f1("", "") == 1.0 and token_f1("", "Rollo") == 0.0
    ex = [QAExample("a", "q", "c", [("Rollo", 0), ("Rollo the Walker", 0)]),
          QAExample("b", "q", "c", [("in 911", 0)])]
    s = squad_scores({"a": "Rollo the Walker", "b": "911 AD"}, ex)
    assert s["exact_match"] == 50.0  # max over references: 'a' matches its second one
    assert s["f1"] == pytest.approx(75.0)  # 1 and (p 1/2, r 1/2)
    assert s["examples"] == 2 and "no_ans_f1" not in s


def test_best_span_respects_order_and_length():
    start = np.array([-1.0, 5.0, 0.0, 0.0])  # (1, 0) would score 14 if order were ignored
    end = np.array([9.0, 0.0, 0.0, 4.0])  # e_0 is large but before the best start
    i, j, score, log_z = best_span(start, end, max_answer_length=4)
    assert (i, j, score) == (1, 3, 9.0) and log_z >= score
    i, j, _, _ = best_span(start, end, max_answer_length=2)  # (1, 3) is 3 tokens long
    assert j - i < 2


# ----------------------------------------------------------------------------- windows
def test_windows_cover_and_overlap():
    for n, room, stride in ((1, 5, 2), (10, 4, 2), (37, 8, 3), (8, 8, 0)):
        w = windows(n, room, stride)
        assert w[0][0] == 0 and w[-1][1] == n
        assert all(e - s <= room for s, e in w)
        assert all(a[1] - b[0] == stride for a, b in zip(w, w[1:], strict=False))
    with pytest.raises(MaskedLMError, match="doc-stride"):
        windows(10, 4, 4)
    assert windows(4, 4, 4) == [(0, 4)]  # one window needs no stride


def test_every_answer_round_trips_through_windows_and_offsets(tiny_qa_model):
    """Long contexts split into small overlapping windows: every answer is inside at least
    one window and its target tokens map back to exactly the answer's characters."""
    tok = maskedlm.load(tiny_qa_model / "model").tokenizer
    task = make_task("qa", doc_stride=4, max_query_length=8)
    examples = read_squad(tiny_qa_model / "train.json")
    # glue four paragraphs into one long context so it needs several windows
    long_ctx = " ".join(ex.context for ex in examples[::2])
    long_ex = []
    for k, ex in enumerate(examples):
        text = ex.answers[0][0]
        start = long_ctx.find(ex.context) + ex.answers[0][1] if ex.context in long_ctx else None
        if start is not None:
            long_ex.append(QAExample(f"l{k}", ex.question, long_ctx, [(text, start)]))
    feats = task.featurize(long_ex, tok, max_length=24)
    assert max(len(f["input_ids"]) for f in feats) <= 24
    assert len(feats) > 2 * len(long_ex)  # several windows per question
    found = set()
    for f in feats:
        ex = long_ex[f["example"]]
        assert f["token_type_ids"].count(0) == f["context_start"]
        if f["start_positions"]:
            i, j = f["start_positions"] - f["context_start"], f["end_positions"] - f["context_start"]
            assert ex.context[f["offsets"][i, 0]:f["offsets"][j, 1]] == ex.answers[0][0]
            found.add(f["example"])
    assert found == set(range(len(long_ex)))


def test_char_to_tokens():
    offsets = np.array([[0, 5], [6, 9], [9, 10], [11, 17]])  # "Rollo led. Anyway"
    assert char_to_tokens(offsets, 0, 5) == (0, 0)
    assert char_to_tokens(offsets, 6, 10) == (1, 2)
    assert char_to_tokens(offsets, 2, 8) == (0, 1)  # mid-token boundaries widen to tokens
    assert char_to_tokens(offsets, 5, 6) is None  # whitespace only


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("obj, message", [
    ("{not json", "not JSON"),
    ({"version": "1.1"}, "not SQuAD JSON"),
    ({"data": [{"title": "T", "paragraphs": [{"context": "Rollo led.",
      "qas": [{"id": "q7", "question": "Who?", "answers": [{"text": "Rollo", "answer_start": 3}]}]}]}]},
     "article 'T' question q7: answer_start 3 does not match"),
    ({"data": [{"title": "T", "paragraphs": [{"context": "  ",
      "qas": [{"id": "q8", "question": "Who?", "answers": [{"text": " ", "answer_start": 0}]}]}]}]},
     "article 'T' question q8: empty context"),
    ({"data": [{"title": "T", "paragraphs": [{"context": "Rollo led.",
      "qas": [{"id": "q9", "question": "Who?", "answers": []}]}]}]},
     "question q9: no answers"),
    ({"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}, "article 'T' paragraph 0: no 'context'"),
])
def test_bad_squad_files_give_one_line_errors(tmp_path, tiny_qa_model, capsys, obj, message):
    bad = write(tmp_path / "bad.json", obj)
    with pytest.raises(MaskedLMError, match=message):
        read_squad(bad)
    code = main(["finetune", "qa", "--model", str(tiny_qa_model / "model"), "--train", bad,
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message.split(":")[0] in err[0]
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- training
def fast(**kw) -> FinetuneConfig:
    base = dict(epochs=40, lr=3e-3, batch_size=8, max_length=64, warmup_ratio=0.05,
                eval_every=10**6, progress=False, seed=0)
    return FinetuneConfig(**{**base, **kw})


@pytest.mark.slow
def test_tiny_model_overfits_questions_and_round_trips(tiny_qa_model, tmp_path):
    train = str(tiny_qa_model / "train.json")
    task = make_task("qa")
    s = finetune(task, tiny_qa_model / "model", train, train, tmp_path / "run", fast(epochs=80))
    assert s["best"]["dev"]["exact_match"] >= 90.0
    m = maskedlm.load(tmp_path / "run")
    ex = read_squad(train)[0]
    out = m.predict(ex.question, ex.context)
    assert out["answer"] == ex.answers[0][0]
    assert ex.context[out["start"]:out["end"]] == out["answer"] and 0 < out["score"] <= 1
    preds = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert preds[ex.id] == ex.answers[0][0]
    again = load_task(tmp_path / "run").evaluate(train)
    assert again["exact_match"] == pytest.approx(s["best"]["dev"]["exact_match"])


@pytest.mark.slow
def test_squad_v2_null_threshold(tiny_qa_model, tmp_path):
    v2 = str(tiny_qa_model / "v2.json")
    task = make_task("qa")
    s = finetune(task, tiny_qa_model / "model", v2, v2, tmp_path / "run", fast())
    dev = s["best"]["dev"]
    assert task.version_2 and dev["no_ans_examples"] == 8 and dev["has_ans_examples"] == 16
    m = load_task(tmp_path / "run")
    result = m.task.calibrate(m.model, m.task.read(v2), m.tokenizer, m.max_length, 8)
    assert result["f1"] >= dev["f1"] - 1e-9  # the sweep includes (near) the default threshold
    metrics = m.task.evaluate(m.model, m.task.read(v2), m.tokenizer, m.max_length, 8)
    assert metrics["f1"] == pytest.approx(result["f1"])
    # an impossibly high threshold answers everything; a very low one nothing
    m.task.threshold = 1e9
    answer_all = m.task.evaluate(m.model, m.task.read(v2), m.tokenizer, 64, 8)
    assert answer_all["no_ans_f1"] == 0.0
    m.task.threshold = -1e9
    abstain_all = m.task.evaluate(m.model, m.task.read(v2), m.tokenizer, 64, 8)
    assert abstain_all["has_ans_f1"] == 0.0 and abstain_all["no_ans_f1"] == 100.0
    # the calibrated threshold is at least as good as either extreme
    assert result["f1"] >= max(answer_all["f1"], abstain_all["f1"]) - 1e-9


def test_cli_calibrate_stores_the_null_threshold(tiny_qa_model, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["finetune", "qa", "--model", str(tiny_qa_model / "model"), "--train",
                 str(tiny_qa_model / "v2.json"), "--dev-articles", "1", "--calibrate",
                 "--out", str(run), "--epochs", "2", "--max-length", "64", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((run / "task.json").read_text())
    assert saved["options"]["threshold"] == summary["dev"]["calibration"]["threshold"]
    assert saved["options"]["version_2"] is True


def test_cli_finetune_evaluate_predict(tiny_qa_model, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["finetune", "qa", "--model", str(tiny_qa_model / "model"), "--train",
                 str(tiny_qa_model / "train.json"), "--dev-articles", "1", "--out", str(run),
                 "--epochs", "2", "--max-length", "64", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["task"] == "qa" and summary["dev"]["examples"] == 8  # one article: 4 x 2
    preds = tmp_path / "preds.json"
    assert main(["evaluate", str(run), "--data", str(tiny_qa_model / "train.json"), "--json",
                 "--predictions", str(preds)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 16 and set(json.loads(preds.read_text())) == {
        ex.id for ex in read_squad(tiny_qa_model / "train.json")}
    assert main(["predict", str(run), "--question", "Who ruled Sicily?", "--context",
                 "Emma ruled Sicily.", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) == {"answer", "start", "end", "score"}
    assert main(["predict", str(run), "Who ruled Sicily?"]) == 2
    assert "--question Q --context C" in capsys.readouterr().err
    assert main(["finetune", "qa", "--model", str(tiny_qa_model / "model"), "--train",
                 str(tiny_qa_model / "train.json"), "--dev-articles", "2", "--out",
                 str(tmp_path / "r2"), "--no-progress"]) == 2
    assert "--dev-articles 2" in capsys.readouterr().err


# ----------------------------------------------------------------------------- export
def test_export_hf_matches_bert_for_question_answering(tiny_qa_model, tmp_path):
    transformers = pytest.importorskip("transformers")
    train = str(tiny_qa_model / "train.json")
    finetune(make_task("qa"), tiny_qa_model / "model", train, None, tmp_path / "run",
             fast(epochs=1))
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    hf = transformers.BertForQuestionAnswering.from_pretrained(tmp_path / "hf").eval()
    m = load_task(tmp_path / "run")
    task = m.task
    feats = task.featurize(read_squad(train)[:5], m.tokenizer, 64)
    batch = task.collate(feats, m.tokenizer.pad_id, None)
    with torch.no_grad():
        ours = m.model.head(m.model.hidden(batch), batch)
        theirs = hf(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                    attention_mask=batch["attention_mask"].long())
    keep = batch["attention_mask"]
    assert torch.allclose(ours[..., 0][keep], theirs.start_logits[keep], atol=1e-5)
    assert torch.allclose(ours[..., 1][keep], theirs.end_logits[keep], atol=1e-5)


@pytest.mark.data
def test_real_squad_offsets_round_trip():
    path = shared_data("squad/train.json")
    examples = read_squad(path)
    assert len(examples) == 8582 and len({ex.title for ex in examples}) == 38
    for ex in examples:
        for text, start in ex.answers:
            assert ex.context[start:start + len(text)] == text


def test_export_onnx_answers_as_pytorch(tiny_qa_model, tmp_path):
    pytest.importorskip("onnxruntime")
    train = str(tiny_qa_model / "train.json")
    finetune(make_task("qa"), tiny_qa_model / "model", train, None, tmp_path / "run", fast(epochs=4))
    assert main(["export-onnx", str(tmp_path / "run"), str(tmp_path / "onnx")]) == 0
    ours, onnx = load_task(tmp_path / "run"), load_task(tmp_path / "onnx", backend="onnx")
    ex = read_squad(train)[:6]
    pairs = [(e.question, e.context) for e in ex]
    a, b = ours.predict(pairs), onnx.predict(pairs)
    assert [x["answer"] for x in a] == [x["answer"] for x in b]
    assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-4)
    assert "pipeline_tag: question-answering" in (tmp_path / "onnx" / "README.md").read_text()
