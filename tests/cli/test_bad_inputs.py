"""Every subcommand against bad input: exit code 2, exactly one line on stderr naming the
file or flag at fault, and nothing left half-written.

One line per case in ``CASES``: the command line (``{name}`` fills in a prepared input, see
``inputs``; outputs go to ``{out}``) and a piece of the message it must print. Every case
runs in-process through :func:`maskedlm.cli.main`.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from maskedlm.checkpoint import RunLock
from maskedlm.cli import main

CASES = [
    # --- pretrain
    ("pretrain --data {missing} --out {out}", "missing: no such shard folder"),
    ("pretrain --data {empty_dir} --out {out}", "empty_dir: no prepared shards"),
    ("pretrain --corpus {empty} --out {out}", "empty.txt"),
    ("pretrain --corpus {binary} --out {out}", "binary.txt"),
    ("pretrain --corpus {latin1} --out {out}", "latin1.txt:2: not UTF-8"),
    ("pretrain --data {shards} --out {out} --lr -1", "--lr must be > 0"),
    ("pretrain --data {shards} --out {out} --batch-size 0", "--batch-size must be >= 1"),
    ("pretrain --data {shards} --out {out} --batch-size x", "--batch-size: invalid int value"),
    ("pretrain --data {shards} --out {out} --seq-len 100000", "--seq-len must be in [8, 4096], got 100000"),
    ("pretrain --data {shards} --out {out} --max-steps 0", "--max-steps must be >= 1"),
    ("pretrain --data {shards} --out {out} --grad-accum 0", "--grad-accum must be >= 1"),
    ("pretrain --data {shards} --out {out} --mask-rate 1.5", "--mask-rate must be in (0, 1)"),
    ("pretrain --data {shards} --out {out} --warmup-ratio 2", "--warmup-ratio must be in [0, 1)"),
    ("pretrain --data {shards} --out {out} --precision fp16", "--precision: invalid choice"),
    ("pretrain --data {shards} --out {out} --progress-every -1", "--progress-every must be >= 0"),
    ("pretrain --data {shards} --out {out} --resume", "--resume given but there is no checkpoint"),
    ("pretrain --data {shards} --out {out} --resume maybe", "--resume: takes no value or 'auto', got 'maybe'"),
    ("pretrain --data {truncated_shards} --out {out}", "train_tokens.bin: missing or truncated"),
    ("pretrain --data {altered_shards} --out {out}", "train_tokens.bin: checksum differs"),
    ("pretrain --data {shards} --out {out} --init {tok}", "tok: not a checkpoint"),
    ("pretrain --data {shards} --out {out} --init {gpt2}", "model_type 'gpt2' is not a BERT"),
    ("pretrain --data {shards} --out {out} --init {truncated_run}", "model.safetensors: corrupt"),
    ("pretrain --data {shards} --out {locked}", "locked: in use by pid"),
    # --- issue #30: never replace what maskedlm did not write; bounded work on hostile input
    ("pretrain --data {shards} --out {user_dir}", "user_dir: exists and was not written by maskedlm"),
    ("pretrain --data {shards} --out {shards}", "is the input"),
    ("pretrain --data {shards} --out {binary}", "binary.txt: exists and is not a directory"),
    ("pretrain --data {shards} --out {out} --batch-size 1000000", "--batch-size 1000000 is over 65536"),
    ("pretrain --data {shards} --out {out} --clip-grad -1", "--clip-grad must be >= 0"),
    ("pretrain --data {shards} --out {out} --init {deep_config}", "config.json: cannot read (RecursionError)"),
    ("prepare --corpus {corpus} --tokenizer {tok} --out {out} --seq-len -7", "--seq-len must be in [8, 4096], got -7"),
    ("tokenizer train --corpus {corpus} --out {run}", "run: is a pretrain run"),
    ("tokenizer train --corpus {corpus} --out {binary}", "binary.txt: exists and is not a directory"),
    ("fill-mask {deep_config} a_[MASK]", "config.json: cannot read (RecursionError)"),
    ("fill-mask {two_layers} a_[MASK]", "num_hidden_layers must be an integer, got 'two'"),
    ("fill-mask {huge_hidden} a_[MASK]", "hidden_size 10000000 is over 16,384"),
    ("fill-mask {million_layers} a_[MASK]", "num_hidden_layers 1000000 is over 512"),
    ("fill-mask {run} {many_masks}", "the prompt has 1000 [MASK]s but only"),
    ("fill-mask {st_escape} a_[MASK]", "leads outside the model folder"),
    ("export-hf {run} {run}", "run: is the input"),
    ("export-hf {run} {binary}", "binary.txt: exists and is not a directory"),
    ("export-hf {run} {user_dir}", "user_dir: exists and was not written by maskedlm; choose a new directory, or pass --overwrite"),
    ("export-st {run} {ft_run} --overwrite", "ft_run: is a finetune run"),
    ("export-onnx {run} {user_dir}", "user_dir: exists and was not written by maskedlm"),
    ("finetune classify --model {run} --train {cls_tsv} --out {run}", "run: is the input"),
    ("finetune classify --model {run} --train {cls_tsv} --out {user_dir}", "user_dir: exists and was not written"),
    ("finetune classify --model {run} --train {cls_tsv} --out {out} --clip-grad -1", "--clip-grad must be >= 0"),
    ("finetune classify --model {run} --train {cls_tsv} --out {out} --batch-size 1000000", "--batch-size must be at most"),
    ("finetune qa --model {run} --train {squad_deep} --out {out}", "squad_deep.json: JSON nested too deep"),
    ("finetune qa --model {run} --train {squad_inf} --out {out}", "question q1: an answer lacks 'text' or an integer 'answer_start'"),
    ("wsd train {run} --semcor {missing} --wordnet {missing} --out {user_dir}", "user_dir: exists and was not written"),
    ("scorecard {run} --tasks sst2 --out {user_dir}", "user_dir: exists and was not written"),
    ("scorecard {run} --tasks sst2 --out {ft_run}", "ft_run: is a finetune run"),
    # --- tokenizer, prepare
    ("tokenizer train --corpus {missing} --out {out}", "missing"),
    ("tokenizer train --corpus {empty} --out {out}", "empty.txt"),
    ("tokenizer train --corpus {binary} --out {out}", "binary.txt"),
    ("tokenizer train --corpus {corpus} --out {out} --vocab-size 0", "--vocab-size must exceed 5, got 0"),
    ("prepare --corpus {latin1} --tokenizer {tok} --out {out}", "latin1.txt:2: not UTF-8"),
    ("prepare --corpus {corpus} --tokenizer {missing} --out {out}", "missing"),
    ("prepare --corpus {corpus} --tokenizer {binary} --out {out}", "binary.txt"),
    # --- fill-mask, mask-preview, export-hf
    ("fill-mask {missing} a_[MASK]", "missing: no such checkpoint directory"),
    ("fill-mask {empty_dir} a_[MASK]", "empty_dir: not a checkpoint"),
    ("fill-mask {binary} a_[MASK]", "binary.txt: a checkpoint is a directory"),
    ("fill-mask {truncated_run} a_[MASK]", "model.safetensors: corrupt weights file"),
    ("fill-mask {ft_run} a_[MASK]", "ft_run: a fine-tuned run (task.json); fill-mask needs"),
    ("fill-mask {run} no_mask_here", "no [MASK] token"),
    ("fill-mask {run} a_[MASK] --top-k 0", "--top-k must be >= 1"),
    ("mask-preview --data {missing}", "missing: no such shard folder"),
    ("mask-preview --data {shards} --mask-rate 0", "--mask-rate must be in (0, 1), got 0.0"),
    ("mask-preview --data {shards} --seq-len 2", "--seq-len must be in [8, 4096], got 2"),
    ("export-hf {tok} {out}", "tok: not a checkpoint"),
    # --- finetune
    ("finetune classify --model {run} --train {missing} --out {out}", "missing"),
    ("finetune classify --model {run} --train {empty} --out {out}", "empty.txt: empty split"),
    ("finetune classify --model {run} --train {binary} --out {out}", "binary.txt"),
    ("finetune classify --model {run} --train {latin1} --out {out}", "latin1.txt:2: not UTF-8"),
    ("finetune classify --model {run} --train {ragged_tsv} --out {out}", "ragged.tsv:3: 3 columns"),
    ("finetune classify --model {run} --train {one_label_tsv} --out {out}", "one_label.tsv: training data has 1"),
    ("finetune classify --model {run} --train {cls_tsv} --dev {unseen_tsv} --out {out}", "unseen.tsv:2: label 'maybe' not seen"),
    ("finetune classify --model {run} --train {cls_tsv} --out {out} --text-column nope", "no text column 'nope'"),
    ("finetune pair --model {run} --train {cls_tsv} --out {out}", "no second-sentence column"),
    ("finetune classify --model {run} --train {cls_tsv} --out {out} --lr -1", "--lr must be positive"),
    ("finetune classify --model {run} --train {cls_tsv} --out {out} --batch-size 0", "--batch-size must be positive"),
    ("finetune classify --model {run} --train {cls_tsv} --out {out} --epochs 0", "--epochs must be positive"),
    ("finetune classify --model {run} --train {cls_tsv} --out {out} --max-length 2", "--max-length 2"),
    ("finetune classify --model {run} --train {cls_tsv} --out {out} --freeze top:3", "--freeze must be"),
    ("finetune classify --model {run} --train {cls_tsv} --out {out} --resume", "no training_state.pt"),
    ("finetune classify --model {tok} --train {cls_tsv} --out {out}", "tok: not a checkpoint"),
    ("finetune classify --model {truncated_run} --train {cls_tsv} --out {out}", "model.safetensors: corrupt"),
    ("finetune tag --model {run} --train {cls_tsv} --out {out}", "cls.tsv:2: 7 columns, earlier lines have 2"),
    ("finetune spans --model {run} --train {binary} --out {out}", "binary.txt"),
    ("export-st {tok} {out}", "not a checkpoint (no config.json)"),
    ("export-onnx {run} {out} --quantize int4", "argument --quantize: invalid choice: 'int4'"),
    ("export-onnx {missing} {out}", "missing: no such checkpoint directory"),
    ("finetune qa --model {run} --train {cls_tsv} --out {out}", "cls.tsv:1: not JSON"),
    ("finetune qa --model {run} --train {notsquad} --out {out}", "notsquad.json: not SQuAD JSON"),
    ("finetune qa --model {run} --train {squad_bad_start} --out {out}",
     "article 'T' question q1: answer_start 3 does not match"),
    ("finetune qa --model {run} --train {squad} --dev-articles 1 --out {out}",
     "--dev-articles 1: "),
    ("finetune qa --model {run} --train {squad} --max-answer-length 0 --out {out}",
     "--max-answer-length must be positive"),
    ("finetune classify --model {run} --train {cls_tsv} --out {locked}", "locked: in use by pid"),
    # --- evaluate, predict
    ("evaluate {run} --data {cls_tsv}", "run: no task head (task.json); not a fine-tuned run"),
    ("evaluate {ft_run} --data {missing}", "missing"),
    ("evaluate {ft_run} --data {binary}", "binary.txt"),
    ("evaluate {ft_run} --data {unseen_tsv}", "unseen.tsv:2: label 'maybe' not seen"),
    ("evaluate {broken_head_run} --data {cls_tsv}", "head.safetensors: corrupt weights file"),
    ("predict {run} some_text", "run: no task head"),
    ("predict {qa_run} some_text", "a qa run takes --question Q --context C"),
    ("predict {missing} some_text", "missing: no such run directory"),
    # --- embeddings
    ("embed {run} --input {missing} --out {out}.npy", "missing"),
    ("embed {run} --input {empty} --out {out}.npy", "empty.txt"),
    ("embed {run} --input {binary} --out {out}.npy", "binary.txt"),
    ("embed {missing} --input {corpus} --out {out}.npy", "missing: no such checkpoint"),
    ("embed {ft_run} --input {corpus} --out {out}.npy", "ft_run: a fine-tuned run (task.json)"),
    ("embed {run} --input {corpus} --out {out}.npy --layers 99", "--layers"),
    ("embed {run} --input {corpus} --out {out}.npy --batch-tokens 0", "--batch-tokens must be >= 1"),
    ("embed {run} --input {corpus} --out {out}.npy --standardize {binary}", "binary.txt"),
    ("standardize fit {run} --corpus {missing} --out {out}.npz", "missing"),
    ("anisotropy {run} --corpus {empty}", "empty.txt"),
    ("anisotropy {run} --corpus {corpus} --pairs 0", "--pairs"),
    ("similarity wic {run} --data {missing}", "missing"),
    ("similarity words {run} --pairs {binary} --corpus {corpus}", "binary.txt"),
    ("wsd train {run} --semcor {missing} --wordnet {missing} --out {out}", "missing"),
    ("wsd eval {missing} --data {corpus} --gold {corpus}", "missing"),
    ("plot-senses {run} --word cat --out {out}.png --corpus {missing}", "missing"),
    ("plot-senses {run} --word cat --out {out}.png --corpus {corpus} --max-instances 0", "--max-instances"),
    # --- scorecard
    ("scorecard {run} --tasks nope --out {out}", "nope"),
    ("scorecard {run} --limit 1 --out {out}", "--limit must be >= 2"),
    ("scorecard {run} --compare {binary} --out {out}", "binary.txt"),
    ("scorecard {run} --file bad --out {out}", "--file 'bad': expected TASK:SPLIT=PATH"),
    ("scorecard {missing} --out {out}", "missing"),
]


@pytest.fixture(scope="module")
def inputs(tiny_data, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Good and bad inputs, made once: a pretrained and a fine-tuned run and broken copies."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "empty_dir").mkdir()
    (d / "empty.txt").write_text("\n\n")
    (d / "binary.txt").write_bytes(b"abc\x00\x01\x02\xff" * 20)
    (d / "latin1.txt").write_bytes("text\tlabel\ncaf\xe9 au lait\t1\n".encode("latin-1"))
    (d / "cls.tsv").write_text("text\tlabel\n" + "".join(
        f"the {w} sat on the mat\t{i % 2}\n" for i, w in enumerate(["cat", "dog"] * 4)))
    (d / "ragged.tsv").write_text("text\tlabel\na cat\t1\na dog\t0\textra\n")
    (d / "one_label.tsv").write_text("text\tlabel\na cat\t1\na dog\t1\n")
    (d / "unseen.tsv").write_text("text\tlabel\na cat\tmaybe\n")
    squad = {"data": [{"title": "T", "paragraphs": [{"context": "Rollo led the Normans.", "qas": [
        {"id": "q1", "question": "Who led?", "answers": [{"text": "Rollo", "answer_start": 0}]}]}]}]}
    (d / "squad.json").write_text(json.dumps(squad))
    squad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    (d / "squad_bad_start.json").write_text(json.dumps(squad))
    (d / "notsquad.json").write_text(json.dumps({"version": "1.1"}))
    deep = "[" * 100_000 + "]" * 100_000
    (d / "squad_deep.json").write_text('{"data": ' + deep + "}")
    squad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = float("inf")
    (d / "squad_inf.json").write_text(json.dumps(squad))  # Python writes Infinity
    for name, config in (("deep_config", None), ("two_layers", {"num_hidden_layers": "two"}),
                         ("huge_hidden", {"hidden_size": 10_000_000, "num_attention_heads": 10}),
                         ("million_layers", {"num_hidden_layers": 1_000_000})):
        (d / name).mkdir()
        (d / name / "config.json").write_text(
            '{"model_type": "bert", "a": ' + deep + "}" if config is None
            else json.dumps({"model_type": "bert", **config}))
    user = d / "user_dir"
    (user / "notes").mkdir(parents=True)
    (user / "thesis.tex").write_text("the user's own file\n")
    (d / "gpt2").mkdir()
    (d / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    run = d / "run"
    assert main(["pretrain", "--data", str(tiny_data["shards"]), "--out", str(run), "--seq-len",
                 "32", "--max-steps", "2", "--batch-size", "4", "--no-progress",
                 "--eval-sequences", "4"]) == 0
    ft = d / "ft_run"
    assert main(["finetune", "classify", "--model", str(run), "--train", str(d / "cls.tsv"),
                 "--out", str(ft), "--epochs", "1", "--no-progress"]) == 0
    assert main(["finetune", "qa", "--model", str(run), "--train", str(d / "squad.json"),
                 "--out", str(d / "qa_run"), "--epochs", "1", "--max-length", "32",
                 "--no-progress"]) == 0
    shutil.copytree(run / "checkpoint", d / "st_escape")  # pooling read from outside the model
    (d / "st_escape" / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
         {"idx": 1, "name": "1", "path": "../user_dir", "type": "sentence_transformers.models.Pooling"}]))
    shutil.copytree(run / "checkpoint", d / "truncated_run")
    weights = d / "truncated_run" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.copytree(ft, d / "broken_head_run")
    (d / "broken_head_run" / "head.safetensors").write_bytes(b"\0" * 7)
    for name in ("truncated_shards", "altered_shards"):
        shutil.copytree(tiny_data["shards"], d / name)
    tokens = d / "truncated_shards" / "train_tokens.bin"
    tokens.write_bytes(tokens.read_bytes()[:-4])
    tokens = d / "altered_shards" / "train_tokens.bin"
    data = bytearray(tokens.read_bytes())
    data[10] ^= 0xFF
    tokens.write_bytes(bytes(data))
    lock = RunLock(d / "locked").__enter__()  # another run holds this one (a second fd: flock)
    files = {p.stem if p.suffix in (".txt", ".tsv", ".json") else p.name: str(p)
             for p in d.iterdir()}
    files.update({"ragged_tsv": files.pop("ragged"), "one_label_tsv": files.pop("one_label"),
                  "cls_tsv": files.pop("cls"), "unseen_tsv": files.pop("unseen"),
                  "missing": str(d / "missing"), "shards": str(tiny_data["shards"]),
                  "tok": str(tiny_data["tokenizer"]), "corpus": str(tiny_data["corpus"]),
                  "many_masks": " ".join(["[MASK]"] * 1000)})
    yield files
    lock.__exit__(None, None, None)


def snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("argv, message", CASES, ids=[c[0].split(" {")[0] + f"-{i}"
                                                      for i, c in enumerate(CASES)])
def test_bad_input_exits_2_with_one_line_naming_it(argv, message, inputs, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(Path(inputs["run"]).parent)
    args = [a.format(out=work / "out", **inputs).replace("_", " ") if "[MASK]" in a or
            a in ("no_mask_here", "some_text") else a.format(out=work / "out", **inputs)
            for a in argv.split()]
    torch.manual_seed(0)

    def too_slow(*_):  # a bad input must fail at once, not after training
        raise TimeoutError(f"{argv}: still running after 60 s")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(60)
    try:
        code = main(args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("maskedlm: error: ") and message in lines[0], lines[0]
    assert list(work.iterdir()) == []  # nothing half-written where the output was to go
    assert snapshot(Path(inputs["run"]).parent) == before  # inputs untouched


def test_the_table_is_large_and_covers_every_subcommand():
    from maskedlm.cli import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    covered = {c[0].split()[0] for c in CASES}
    assert len(CASES) >= 40 and covered == commands, commands - covered
