"""The scorecard end to end on a tiny model and tiny files in the tasks' real formats."""

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

from maskedlm.checkpoint import load_model, save_checkpoint
from maskedlm.cli import main
from maskedlm.data.tokenizer import train_tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining
from maskedlm.scorecard import hyperparameters, load_card, markdown, scorecard, selection_split

WORDS = "jane anna paris lima met the team in today good bad film plot fine dull bank river money".split()


def _write_data(root: Path, n: int = 40) -> Path:
    rng = random.Random(0)
    (root / "sst2").mkdir(parents=True)
    (root / "mrpc").mkdir()
    (root / "conll2003").mkdir()
    (root / "ud_en_lines").mkdir()
    (root / "genia").mkdir()
    (root / "wic").mkdir()
    (root / "squad").mkdir()
    articles = []
    for a in range(6):  # the card reports the last 4 articles and trains on the rest
        paragraphs = []
        for k in range(4):
            who, where = rng.choice(["jane", "anna"]), rng.choice(["paris", "lima"])
            context = f"{who} met the team in {where} today"
            paragraphs.append({"context": context, "qas": [
                {"id": f"{a}-{k}-w", "question": "who met the team",
                 "answers": [{"text": who, "answer_start": 0}]},
                {"id": f"{a}-{k}-p", "question": "met the team in",
                 "answers": [{"text": where, "answer_start": context.index(where)}]}]})
        articles.append({"title": f"t{a}", "paragraphs": paragraphs})
    (root / "squad" / "train.json").write_text(json.dumps({"version": "1.1", "data": articles}))
    for split, m in (("train", n), ("dev", n // 4)):
        rows = [(f"a {rng.choice(['good', 'fine'])} film", 1) if i % 2 else
                (f"a {rng.choice(['bad', 'dull'])} plot", 0) for i in range(m)]
        (root / "sst2" / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows * 3))
        (root / "mrpc" / f"{split}.tsv").write_text(
            "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
            + "".join(f"{y}\t{i}\t{i}\t{t}\t{t if y else 'the team met'}\n"
                      for i, (t, y) in enumerate(rows)))
        sents = []
        for _ in range(m):
            who, where = rng.choice(["jane", "anna"]), rng.choice(["paris", "lima"])
            sents.append(([who, "met", "the", "team", "in", where], ["B-PER", "O", "O", "O", "O", "B-LOC"]))
        (root / "conll2003" / ("train.txt" if split == "train" else "dev.txt")).write_text(
            "\n\n".join("\n".join(f"{w} X X {t}" for w, t in zip(ws, ts, strict=True))
                        for ws, ts in sents) + "\n")
        pos = {"jane": "PROPN", "anna": "PROPN", "paris": "PROPN", "lima": "PROPN", "met": "VERB",
               "the": "DET", "team": "NOUN", "in": "ADP"}
        (root / "ud_en_lines" / f"en_lines-ud-{split}.conllu").write_text("".join(
            "".join(f"{k}\t{w}\t{w}\t{pos[w]}\t_\t_\t0\t_\t_\t_\n" for k, w in enumerate(ws, 1)) + "\n"
            for ws, _ in sents))
        (root / "genia" / f"{split}.jsonlines").write_text("".join(
            json.dumps({"tokens": ws, "entity_mentions": [
                {"start": 0, "end": 1, "entity_type": "protein"},
                {"start": 5, "end": 6, "entity_type": "DNA"}]}) + "\n" for ws, _ in sents))
        pairs = [("bank", "the bank of the river", "the bank has money", "F"),
                 ("film", "a good film", "a dull film", "T")] * (m // 2)
        (root / "wic" / f"{split}.data.txt").write_text("".join(
            f"{lemma}\tN\t1-1\t{a}\t{b}\n" if lemma == "bank" else f"{lemma}\tN\t2-2\t{a}\t{b}\n"
            for lemma, a, b, _ in pairs))
        (root / "wic" / f"{split}.gold.txt").write_text("".join(f"{g}\n" for *_, g in pairs))
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("card")
    tok = train_tokenizer([[" ".join(WORDS)] * 20], vocab_size=100, lowercase=True,
                          show_progress=False)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    save_checkpoint(d / "model", BertForPreTraining(cfg), tok)
    return d / "model", _write_data(d / "data")


TASKS = ["sst2", "mrpc", "conll", "upos", "genia", "squad", "wic"]


def test_selection_split_is_disjoint_seeded_and_capped():
    tr, sel = selection_split(100, 0.1, 1000, 0)
    assert len(sel) == 10 and len(tr) == 90 and not set(tr) & set(sel)
    assert sorted(tr + sel) == list(range(100))
    assert selection_split(100, 0.1, 1000, 0) == (tr, sel)
    assert selection_split(100, 0.1, 1000, 1) != (tr, sel)
    assert len(selection_split(50_000, 0.1, 1000, 0)[1]) == 1000
    with pytest.raises(MaskedLMError):
        selection_split(1, 0.1, 1000, 0)


def test_sst2_searches_its_rates_on_small_encoders(setup, tmp_path):
    model, data = setup
    card = scorecard(model, ["sst2", "mrpc"], data_root=data, log=lambda s: None, quick=True,
                     out=tmp_path / "card", overrides={"batch_size": 8}, limit=24)
    sst2, mrpc = card["tasks"]["sst2"], card["tasks"]["mrpc"]
    assert [c["lr"] for c in sst2["lr_candidates"]] == [1e-4, 3e-4]  # TaskSpec.lr_candidates
    best = max(c["selection_score"] for c in sst2["lr_candidates"])
    assert sst2["selection_score"] == best
    assert sst2["lr"] == min(c["lr"] for c in sst2["lr_candidates"] if c["selection_score"] == best)
    assert mrpc["lr"] == 1e-4 and "lr_candidates" not in mrpc  # hidden <= 512, no search
    assert card["hyperparameters"]["task_lr_candidates"] == {"sst2": [1e-4, 3e-4]}
    assert hyperparameters(768)["task_lr_candidates"] == {}  # wide encoders: one rate, no search
    assert "sst2: rate" in (tmp_path / "card" / "scorecard.md").read_text()


@pytest.mark.slow  # three real fine-tuning runs: ~27 s
def test_sst2_rate_is_chosen_on_the_selection_split_and_dev_scores_the_chosen_run_only(
        setup, tmp_path, monkeypatch):
    """1e-7 leaves a random 32-wide encoder where it was; 2e-3 and 3e-3 learn the toy
    sentiment. The official dev file given here has every label flipped, so a choice made on
    dev would take 1e-7; the card must choose on the selection split carved from train, the
    lower of the two rates that tie there, and read dev for that run alone."""
    from maskedlm.tasks.finetune import TaskPredictor

    model, data = setup
    rows = (data / "sst2" / "dev.tsv").read_text().splitlines()
    flipped = tmp_path / "dev-flipped.tsv"
    flipped.write_text("\n".join([rows[0]] + [f"{t}\t{1 - int(y)}" for t, y in
                                               (r.split("\t") for r in rows[1:])]) + "\n")
    scored = []  # (run, file) of every official-dev evaluation; the real one runs
    real_evaluate = TaskPredictor.evaluate

    def spy(self, path):
        scored.append((Path(self.path).name, Path(path)))
        return real_evaluate(self, path)

    monkeypatch.setattr(TaskPredictor, "evaluate", spy)
    card = scorecard(model, ["sst2"], data_root=data, files={"sst2:eval": str(flipped)},
                     out=tmp_path / "card", log=lambda s: None,
                     overrides={"batch_size": 8, "task_lr_candidates": {"sst2": [3e-3, 1e-7, 2e-3]}})
    row = card["tasks"]["sst2"]
    tried = {c["lr"]: c["selection_score"] for c in row["lr_candidates"]}
    print(tried, row["score"])
    assert list(tried) == [1e-7, 2e-3, 3e-3]  # ascending, whatever order they were given in
    assert tried[1e-7] < 0.8 and tried[2e-3] == tried[3e-3] == 1.0
    assert row["lr"] == 2e-3 and row["selection_score"] == 1.0
    assert row["score"] < 0.5  # the flipped dev punishes the run that learned
    assert scored == [("sst2-lr0.002", flipped)]  # dev read once, for the chosen run
    assert all(set(c) == {"lr", "selection_score", "selected_step", "steps"}
               for c in row["lr_candidates"])  # no dev score of any candidate is recorded


def test_card_end_to_end(setup, tmp_path):
    model, data = setup
    card = scorecard(model, TASKS, data_root=data, out=tmp_path / "card", log=lambda s: None,
                     overrides={"lr": 3e-3, "head_lr_spans": 3e-3, "batch_size": 4})
    print({k: round(v["score"], 3) for k, v in card["tasks"].items()})
    assert list(card["tasks"]) == TASKS
    for name, row in card["tasks"].items():
        assert 0.0 <= row["score"] <= 1.0, name
        assert row["reported_on"] and row["selected_on"]
    for name in ("mrpc", "conll", "upos", "genia"):
        row = card["tasks"][name]
        assert row["train_examples"] + row["selection_examples"] == 40  # carved from train
        assert row["selection_examples"] == 4
    assert card["tasks"]["sst2"]["selection_examples"] == 12
    assert card["tasks"]["sst2"]["eval_examples"] == 30  # the whole dev file is reported
    squad = card["tasks"]["squad"]  # 2 articles x 8 questions train (and select), 4 reported
    assert squad["train_examples"] + squad["selection_examples"] == 16
    assert squad["eval_examples"] == 32
    assert card["mean"] == pytest.approx(sum(r["score"] for r in card["tasks"].values()) / len(TASKS))
    # The toy tasks are learnable: sentiment words decide sst2, each word has one POS.
    assert card["tasks"]["sst2"]["score"] == 1.0
    assert card["tasks"]["upos"]["score"] > 0.9
    assert card["overridden"] == ["batch_size", "head_lr_spans", "lr"]
    assert {card["tasks"][t]["lr"] for t in ("sst2", "mrpc", "squad")} == {3e-3}  # override wins
    assert "lr_candidates" not in card["tasks"]["sst2"]  # and no rate search
    assert card["hyperparameters"]["task_lr_candidates"] == {}
    saved = load_card(tmp_path / "card")
    assert saved["mean"] == card["mean"]
    md = (tmp_path / "card" / "scorecard.md").read_text()
    assert "| sst2 | accuracy | official dev |" in md and "**mean**" in md
    if importlib.util.find_spec("matplotlib"):  # the plot extra; CI installs it
        assert (tmp_path / "card" / "scorecard.png").stat().st_size > 1000
    assert not (tmp_path / "card" / "runs").exists()  # fine-tuned runs are cleaned up


def test_random_init_twin_and_compare_via_cli(setup, tmp_path, capsys):
    model, data = setup
    first = tmp_path / "a"
    assert main(["scorecard", str(model), "--tasks", "sst2", "--quick", "--data-root", str(data),
                 "--out", str(first), "--no-progress"]) == 0
    assert main(["scorecard", str(model), "--tasks", "sst2", "--quick", "--data-root", str(data),
                 "--out", str(tmp_path / "b"), "--random-init", "--compare",
                 str(first / "scorecard.json"), "--json", "--no-progress"]) == 0
    card = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert card["random_init"] is True
    md = (tmp_path / "b" / "scorecard.md").read_text()
    assert md.count("| sst2 |") == 1 and "| b | a |" in md
    assert markdown([card, load_card(first)]).count("**") == 6


def test_random_init_twin_has_fresh_weights(setup, tmp_path):
    from maskedlm.scorecard import random_init_twin

    model, _ = setup
    twin = random_init_twin(str(model), tmp_path / "twin", seed=3)
    a, _ = load_model(model, warn_fresh=False)
    b, _ = load_model(twin, warn_fresh=False)
    assert a.config.to_dict() == b.config.to_dict()
    assert not torch.equal(a.bert.encoder.layer[0].intermediate.weight,
                           b.bert.encoder.layer[0].intermediate.weight)


@pytest.mark.parametrize("argv,needle", [
    (["--tasks", "sst2,nope"], "unknown task 'nope'"),
    (["--file", "sst2:train"], "expected TASK:SPLIT=PATH"),
    (["--file", "sst2:train=/nonexistent.tsv"], "/nonexistent.tsv not found"),
    (["--compare", "/nonexistent.json"], "not a readable scorecard"),
    (["--limit", "1"], "--limit must be >= 2"),
])
def test_bad_input_is_one_line_exit_2(setup, tmp_path, capsys, argv, needle):
    model, data = setup
    rc = main(["scorecard", str(model), "--data-root", str(data), "--out", str(tmp_path / "x"),
               *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]
    assert not (tmp_path / "x" / "scorecard.json").exists()


@pytest.mark.data
@pytest.mark.slow
def test_card_on_the_real_datasets(setup, tmp_path):
    """Every task of the card reads its real file in ../shared/data (a few examples each)."""
    from conftest import shared_data

    root = shared_data("wordnet").parent
    model, _ = setup
    card = scorecard(model, quick=True, data_root=root, out=tmp_path / "real", limit=48,
                     log=lambda s: None)
    assert set(card["tasks"]) == {"sst2", "mrpc", "rte", "conll", "upos", "genia", "squad", "wic",
                                  "wsd", "stsb", "stsb-simcse"}
    assert card["tasks"]["stsb"]["eval_examples"] == 1500
    assert card["tasks"]["squad"]["eval_examples"] == 954  # the last 4 articles
    assert card["tasks"]["sst2"]["eval_examples"] == 872
    assert card["tasks"]["wsd"]["details"]["instances"] == 455
    assert all(0.0 <= r["score"] <= 1.0 for r in card["tasks"].values())


def test_modernbert_card_and_its_random_init_twin(setup, tmp_path):
    from maskedlm.data.tokenizer import Tokenizer
    bert_dir, data = setup
    tok = Tokenizer.load(bert_dir)  # the same tokenizer under a ModernBERT encoder
    torch.manual_seed(0)
    cfg = ModelConfig(arch="modernbert", vocab_size=tok.vocab_size, hidden_size=32,
                      num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
                      max_position_embeddings=64, local_attention=4, nsp_head=False)
    save_checkpoint(tmp_path / "mb", BertForPreTraining(cfg), tok)
    card = scorecard(tmp_path / "mb", ["sst2", "conll"], data_root=data, out=tmp_path / "card",
                     random_init=True, log=lambda s: None, quick=True,
                     overrides={"lr": 3e-3, "batch_size": 4})
    assert card["architecture"]["arch"] == "modernbert"
    assert all(0.0 <= r["score"] <= 1.0 for r in card["tasks"].values())



def test_a_card_stopped_mid_way_leaves_no_fine_tuned_runs(setup, tmp_path):
    """The fine-tuned runs live in a temporary folder inside the card's; an interruption
    (Ctrl-C as the second task starts, after the first has fine-tuned) removes it too."""
    model, data = setup
    started = []

    def log(line: str) -> None:
        if line.endswith("..."):
            started.append(line)
            if len(started) == 2:
                assert list((tmp_path / "card").glob(".runs.tmp-*/*"))  # the first task's run
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scorecard(model, ["sst2", "mrpc"], data_root=data, log=log, quick=True,
                  out=tmp_path / "card", overrides={"batch_size": 8}, limit=8)
    assert len(started) == 2
    assert not list((tmp_path / "card").glob(".runs.*"))
