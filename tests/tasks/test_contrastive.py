"""Contrastive sentence embeddings: gradient cache, InfoNCE, DDP gathering, the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli, save_tiny_encoder

import maskedlm
from maskedlm.checkpoint import load_model
from maskedlm.tasks.common import TaskModel
from maskedlm.tasks.contrastive import (
    ContrastiveTask,
    PairExample,
    info_nce,
    read_examples,
)

WORDS = ("the cat dog bird sat ran flew over under near house garden river tree small big "
         "quick slow red green blue happy sad morning evening walked jumped").split()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return save_tiny_encoder(tmp_path_factory.mktemp("enc") / "model", WORDS)


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]


def model_and_batch(encoder, task, examples, dropout: float):
    pretrained, _ = load_model(encoder, warn_fresh=False)
    tok = maskedlm.load(encoder, warn_fresh=False).tokenizer
    model = TaskModel(pretrained.bert, task.make_head(pretrained.config))
    model.train()
    feats = task.featurize(examples, tok, 32)
    task.encoder_dropout = dropout
    return model, task.collate(feats, tok.pad_id, None)


def loss_and_grads(model, task, batch, seed: int = 0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = task.loss(model, batch)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def triples(n: int) -> list[PairExample]:
    s = sentences(3 * n, seed=1)
    return [PairExample(s[i], s[n + i], s[2 * n + i], f"t:{i}") for i in range(n)]


@pytest.mark.parametrize("kind", ["simcse", "triples"])
def test_grad_cache_equals_uncached_loss_and_gradients_under_dropout(encoder, kind):
    """Same chunks, dropout on: the cached pass replays the masks, so loss and every
    gradient equal the uncached graph's."""
    ex = ([PairExample(s, None, None, "x") for s in sentences(12)] if kind == "simcse"
          else triples(8))
    results = []
    for cache in (False, True):
        task = ContrastiveTask(chunk=5, grad_cache=cache, matryoshka=[16, 8])
        model, batch = model_and_batch(encoder, task, ex, dropout=0.1)
        results.append(loss_and_grads(model, task, batch))
    (l0, g0), (l1, g1) = results
    assert l0 == pytest.approx(l1, rel=1e-6)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-6, msg=k)


def test_chunked_cache_equals_one_full_batch_without_dropout(encoder):
    """Length-sorted chunks through the cache vs one padded forward of the whole batch."""
    ex = triples(10)
    task = ContrastiveTask(chunk=1000, grad_cache=False)
    model, batch = model_and_batch(encoder, task, ex, dropout=0.0)
    l_full, g_full = loss_and_grads(model, task, batch)
    task.chunk, task.grad_cache = 4, True
    l_c, g_c = loss_and_grads(model, task, batch)
    assert l_c == pytest.approx(l_full, rel=1e-5)
    for k in g_full:
        torch.testing.assert_close(g_c[k], g_full[k], rtol=1e-3, atol=1e-6, msg=k)


def test_info_nce_is_cross_entropy_over_in_batch_candidates():
    torch.manual_seed(0)
    a, p, n = (torch.nn.functional.normalize(torch.randn(4, 6), dim=-1) for _ in range(3))
    got = info_nce(a, p, n, temperature=0.05)
    logits = a @ torch.cat([p, n]).T / 0.05
    ref = -torch.log_softmax(logits, 1).diagonal().mean()
    assert float(got) == pytest.approx(float(ref), rel=1e-6)
    # Matryoshka adds a loss on the first d dimensions, renormalised
    a3, c3 = (torch.nn.functional.normalize(x[:, :3], dim=-1) for x in (a, torch.cat([p, n])))
    ref3 = -torch.log_softmax(a3 @ c3.T / 0.05, 1).diagonal().mean()
    assert float(info_nce(a, p, n, 0.05, [3])) == pytest.approx(float(ref + ref3), rel=1e-6)


def write_pairs(path, n: int, seed: int = 0, columns: int = 2):
    s = sentences(n * columns, seed)
    path.write_text("".join("\t".join(s[i + k * n] for k in range(columns)) + "\n" for i in range(n)))
    return path


@pytest.fixture(scope="module")
def trained(encoder, tmp_path_factory):
    """One CLI run on triples (max pooling, Matryoshka 16,8): (run dir, its stdout)."""
    from maskedlm.cli import main

    d = tmp_path_factory.mktemp("run")
    pairs = write_pairs(d / "pairs.tsv", 24, columns=3)
    out = d / "run"
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([str(x) for x in ("finetune", "contrastive", "--model", encoder, "--train", pairs,
                                      "--dev-fraction", "0.25", "--out", out, "--batch-size", "6",
                                      "--chunk", "4", "--epochs", "2", "--lr", "1e-3", "--pool",
                                      "max", "--matryoshka", "16,8", "--no-progress")])
    assert code == 0
    return out, buf.getvalue()


def test_finetune_contrastive_cli_writes_a_run_that_encodes_as_trained(encoder, trained):
    out, stdout = trained
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["task"] == "contrastive" and "retrieval_accuracy" in summary["dev"]
    meta = json.loads((out / "task.json").read_text())
    assert meta["options"]["matryoshka"] == [16, 8] and meta["options"]["pool"] == "max"
    m = maskedlm.load(out)
    assert m.encode_defaults == {"pool": "max", "normalize": True}
    texts = sentences(3, seed=5)
    v = m.encode(texts)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # the same vectors as the trained model's own pooling head
    task = ContrastiveTask(pool="max")
    pretrained, _ = load_model(out, warn_fresh=False)
    tm = TaskModel(pretrained.bert, task.make_head(pretrained.config))
    ref = np.array([r["embedding"] for r in task.predict(tm, texts, m.tokenizer, 64, 8)])
    np.testing.assert_allclose(v, ref, atol=1e-5)
    # and it moved away from the raw encoder
    raw = maskedlm.load(encoder, warn_fresh=False).encode(texts, pool="max", normalize=True)
    assert not np.allclose(v, raw, atol=1e-3)


def test_export_st_and_onnx_keep_pooling_normalisation_and_name_matryoshka(trained, tmp_path):
    from maskedlm.export import export_onnx, export_st

    out, _ = trained
    texts = sentences(4, seed=7)
    ours = maskedlm.load(out).encode(texts)
    st = pytest.importorskip("sentence_transformers")
    export_st(out, tmp_path / "st")  # --pool left at its default: the run's max pooling wins
    theirs = st.SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(texts)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    assert "Matryoshka sizes 16, 8" in (tmp_path / "st" / "README.md").read_text()
    pytest.importorskip("onnxruntime")
    export_onnx(out, tmp_path / "onnx")
    onnx_vecs = maskedlm.load(tmp_path / "onnx", backend="onnx").encode(texts)
    np.testing.assert_allclose(onnx_vecs, ours, atol=1e-4)
    assert "Matryoshka sizes 16, 8" in (tmp_path / "onnx" / "README.md").read_text()


def test_bad_inputs_are_one_line_exit_2(encoder, tmp_path, capsys):
    one = tmp_path / "one.tsv"
    one.write_text("only an anchor\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    pairs = write_pairs(tmp_path / "p.tsv", 4)
    for argv, needle in (
            (["--train", one], "one.tsv:1: one column"),
            (["--train", empty], "empty.txt: no sentences"),
            (["--train", pairs, "--matryoshka", "64,16"], "--matryoshka 64: larger than the model's hidden size 32"),
            (["--train", pairs, "--matryoshka", "a,b"], "expected sizes like 256,128,64")):
        code, _, err = run_cli(capsys, "finetune", "contrastive", "--model", encoder,
                               "--out", tmp_path / "o", "--no-progress", *argv)
        assert code == 2 and err.count("\n") == 1 and needle in err, err


def test_read_nli_makes_one_triple_per_premise_with_both(tmp_path):
    f = tmp_path / "nli.csv"
    f.write_text('pairID,sentence1,sentence2,label\n1,"A man, sitting.",He sits.,entailment\n'
                 '2,"A man, sitting.",He runs.,contradiction\n3,"A man, sitting.",He is old.,neutral\n'
                 "4,A dog.,An animal.,entailment\n")
    ex = read_examples(f)  # .csv: NLI by extension
    assert [(e.anchor, e.positive, e.negative) for e in ex] == [("A man, sitting.", "He sits.", "He runs.")]


DDP_WORKER = r'''
import json, sys
import torch
import torch.distributed as dist

rank, world = int(sys.argv[1]), int(sys.argv[2])
encoder, init, data, out = sys.argv[3:7]
dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
import maskedlm
from maskedlm.checkpoint import load_model
from maskedlm.tasks.common import TaskModel
from maskedlm.tasks.contrastive import ContrastiveTask, PairExample

rows = json.load(open(data))
n = len(rows) // world
ex = [PairExample(*r, where="x") for r in rows[rank * n:(rank + 1) * n]]
task = ContrastiveTask(chunk=3, grad_cache=True, encoder_dropout=0.0, matryoshka=[8])
pretrained, _ = load_model(encoder, warn_fresh=False)
tok = maskedlm.load(encoder, warn_fresh=False).tokenizer
model = TaskModel(pretrained.bert, task.make_head(pretrained.config)).train()
batch = task.collate(task.featurize(ex, tok, 32), tok.pad_id, None)
loss = task.loss(model, batch)
loss.backward()
names = [k for k, p in model.named_parameters() if p.grad is not None]
flat = torch.cat([model.get_parameter(k).grad.flatten() for k in names] + [loss.detach()[None]])
dist.all_reduce(flat)  # what DDP does with the gradients (a sum here; DDP's mean x world)
if rank == 0:
    torch.save({"names": names, "flat": flat}, out)
dist.destroy_process_group()
'''


def test_two_process_gloo_gathers_negatives_as_one_process_with_the_whole_batch(encoder, tmp_path):
    """2 ranks x 5 triples: the summed loss and gradients equal one process with all 10
    (every rank's positives and hard negatives are each anchor's candidates, and the
    gradients of another rank's vectors flow back to it)."""
    import os
    import subprocess
    import sys

    rows = [[e.anchor, e.positive, e.negative] for e in triples(10)]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    (tmp_path / "worker.py").write_text(DDP_WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(r), "2", str(encoder),
                               str(tmp_path / "init"), str(tmp_path / "data.json"),
                               str(tmp_path / "out.pt")], env=env, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    ddp = torch.load(tmp_path / "out.pt")

    task = ContrastiveTask(chunk=3, grad_cache=True, matryoshka=[8])
    model, batch = model_and_batch(encoder, task, [PairExample(*r, where="x") for r in rows], 0.0)
    loss, grads = loss_and_grads(model, task, batch)
    assert float(ddp["flat"][-1]) == pytest.approx(loss, rel=1e-5)
    one = torch.cat([grads[k].flatten() for k in ddp["names"]])
    torch.testing.assert_close(ddp["flat"][:-1], one, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_finetune_contrastive_under_torchrun_equals_one_process_with_the_whole_batch(encoder, tmp_path):
    """`maskedlm finetune contrastive` under a 2-process gloo torchrun (4 triples per rank)
    trains the same weights as one process with 8: each rank takes its share of every
    step, gathers the other rank's negatives and sums the gradients; rank 0 writes."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    rows = [[e.anchor, e.positive, e.negative] for e in triples(16)]
    data = tmp_path / "triples.tsv"
    data.write_text("".join("\t".join(r) + "\n" for r in rows))
    args = ["finetune", "contrastive", "--model", str(encoder), "--train", str(data),
            "--encoder-dropout", "0", "--epochs", "2", "--lr", "1e-3", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "maskedlm.cli", *args, "--batch-size", "8",
                          "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "maskedlm.cli", *args, "--batch-size", "4",
                          "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads(two.stdout.strip().splitlines()[-1])["steps"] == 4  # printed once, by rank 0
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("one", "two"))
    start = load_file(next(encoder.glob("*.safetensors")) if encoder.is_dir() else encoder)
    moved = [k for k in a if k in start and not torch.allclose(a[k], start[k])]
    assert moved, "training changed nothing: the comparison would be empty"
    for k in a:  # Adam turns float noise in near-zero gradients into ~lr/100 steps
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4)
    losses = [[json.loads(line)["train_loss"] for line in
               (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)  # the global loss, logged once
