"""Subcommands for contextual embeddings: embed, standardize, anisotropy, similarity, wsd, plot.

Registered into ``maskedlm`` by :func:`register` (:mod:`maskedlm.cli` builds the parser).

    maskedlm embed M --input sentences.txt --out vecs.npy --unit word --layers last4-mean
    maskedlm standardize fit M --corpus books/ --out stats.npz
    maskedlm anisotropy M --corpus books/ --standardize stats.npz --json
    maskedlm similarity wic M --data wic/ --json
    maskedlm similarity words M --pairs SimLex-999.txt --corpus books/ --json
    maskedlm wsd train M --semcor semcor3.0.jsonl.gz --wordnet wordnet/dict --out senses/
    maskedlm wsd eval senses/ --data semeval2007.data.xml --gold semeval2007.gold.key.txt --json
    maskedlm wsd predict senses/ "He sat on the bank of the river." --json
    maskedlm plot-senses M --word die --corpus books/ --out die.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

import numpy as np

from maskedlm.cli.args import add_fields
from maskedlm.errors import MaskedLMError


# ----------------------------------------------------------------------------- shared options
def _model_args(p: argparse.ArgumentParser) -> None:
    from maskedlm.options import VectorOptions

    p.add_argument("model", help="a run, a checkpoint or a Hugging Face BERT or ModernBert directory")
    add_fields(p, VectorOptions, ["layers", "pool", "standardize"])
    _run_args(p)


def _run_args(p: argparse.ArgumentParser) -> None:
    from maskedlm.options import RunOptions, VectorOptions

    add_fields(p, VectorOptions, ["max_length", "batch_tokens"])
    add_fields(p, RunOptions)


def _load(a: argparse.Namespace, path: str | None = None) -> Any:
    from maskedlm.api import load

    # Contextual embeddings use the encoder alone: no warning about a fresh MLM head.
    model = load(path or a.model, device=a.device, warn_fresh=False, backend=a.backend)
    if not hasattr(model, "embed_words"):
        raise MaskedLMError(f"{path or a.model}: a fine-tuned run (task.json); {a.command} needs "
                            "a pretrained encoder (the run's --model)")
    return model


def _run_kw(a: argparse.Namespace) -> dict[str, Any]:
    if a.batch_tokens is not None and a.batch_tokens < 1:
        raise MaskedLMError(f"--batch-tokens must be >= 1, got {a.batch_tokens}")
    return {"max_length": a.max_length, "batch_tokens": a.batch_tokens,
            "progress": a.progress and sys.stderr.isatty()}


def _positive(a: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(a, name) < 1:
            raise MaskedLMError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")


def _stats(a: argparse.Namespace, model: Any) -> Any:
    from maskedlm.embeddings.pooling import Standardizer

    if not getattr(a, "standardize", None):
        return None
    return Standardizer.load(a.standardize, dim=model.config.hidden_size)


def _print(a: argparse.Namespace, result: dict[str, Any]) -> None:
    if getattr(a, "json", False):
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k}: {round(v, 4) if isinstance(v, float) else v}")


# ----------------------------------------------------------------------------- embed
def run_embed(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.embed import check_unit_pool, embed_to_file, read_sentences

    lines = read_sentences(a.input)
    check_unit_pool(a.unit, a.pool)
    model = _load(a)
    done = embed_to_file(model, lines, a.out, unit=a.unit, pool=a.pool, layers=a.layers,
                         pretokenized=a.pretokenized, standardize=_stats(a, model), **_run_kw(a))
    print(f"{done['count']} x {done['dims']} {a.unit} vectors -> {done['out']} (rows: {done['rows']})")
    return 0


# ----------------------------------------------------------------------------- corpus statistics
def _corpus_kw(a: argparse.Namespace) -> dict[str, Any]:
    return {"max_sentences": a.max_sentences, "seed": a.seed, "layers": a.layers, "pool": a.pool,
            **_run_kw(a)}


def run_standardize_fit(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.pooling import fit_corpus_standardizer

    _positive(a, "max_sentences")
    model = _load(a)
    std = fit_corpus_standardizer(model, a.corpus, **_corpus_kw(a))
    std.save(a.out)
    _print(a, {"out": a.out, "vectors": std.count, "dims": int(std.mean.shape[0]),
               "max_abs_mean": float(np.abs(std.mean).max()), "max_std": float(std.std.max())})
    return 0


def run_anisotropy(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.pooling import corpus_anisotropy

    _positive(a, "pairs", "max_sentences")
    model = _load(a)
    value = corpus_anisotropy(model, a.corpus, pairs=a.pairs, standardize=_stats(a, model),
                              **_corpus_kw(a))
    _print(a, {"anisotropy": value, "pairs": a.pairs})
    return 0


# ----------------------------------------------------------------------------- similarity
def run_wic(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.similarity import evaluate_wic

    model = _load(a)
    _print(a, evaluate_wic(model, a.data, layers=a.layers, pool=a.pool,
                           standardize=_stats(a, model), **_run_kw(a)))
    return 0


def run_sts(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.sts import evaluate_sts, read_sts

    rng = None
    if a.score_range:
        try:
            lo, hi = (float(x) for x in a.score_range.split(","))
        except ValueError:
            raise MaskedLMError(f"--score-range {a.score_range!r}: expected LO,HI") from None
        rng = (lo, hi)
    pairs = read_sts(a.data, rng)
    model = _load(a)
    kw = _run_kw(a)
    if a.pool:
        kw["pool"] = a.pool
    t0 = time.perf_counter()
    result = evaluate_sts(model, pairs, **kw)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    _print(a, result)
    return 0


def run_words(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.similarity import evaluate_word_pairs

    _positive(a, "max_occurrences")
    model = _load(a)
    result = evaluate_word_pairs(model, a.pairs, a.corpus, max_occurrences=a.max_occurrences,
                                 layers=a.layers, pool=a.pool, standardize=_stats(a, model),
                                 **_run_kw(a))
    if result["missing"]:
        warnings.warn(f"{a.pairs}: {result['missing']} pair(s) have a word absent from the corpus "
                      "and are left out", stacklevel=1)
    _print(a, result)
    return 0


# ----------------------------------------------------------------------------- wsd
def run_wsd_train(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.wsd import PosTagger, WordNetInventory, train_from_semcor
    from maskedlm.files import check_output_dir

    if a.max_sentences < 0:
        raise MaskedLMError(f"--max-sentences must be >= 0, got {a.max_sentences}")
    # user errors before loading the model and training the tagger (checked again on writing)
    check_output_dir(a.out, "wsd", overwrite=a.overwrite, inputs=[a.model, a.semcor, a.wordnet])
    inventory = WordNetInventory(a.wordnet)
    tagger = PosTagger.train(a.pos_train) if a.pos_train else None  # user errors before embedding
    model = _load(a)
    centroids, stats = train_from_semcor(model, a.semcor, inventory, a.out, tagger=tagger,
                                         max_sentences=a.max_sentences, overwrite=a.overwrite,
                                         layers=a.layers, pool=a.pool,
                                         standardize=_stats(a, model), **_run_kw(a))
    info = centroids.info
    print(f"{info['senses']} sense centroids from {info['annotations']} annotations in "
          f"{info['sentences']} sentences ({stats['dropped_keys']} keys not in WordNet dropped); "
          f"read {stats['read_seconds']:.0f} s, embedded {stats['embed_seconds']:.0f} s -> {a.out}")
    return 0


def _wsd_setup(a: argparse.Namespace) -> tuple[Any, Any, Any]:
    from maskedlm.embeddings.wsd import SenseCentroids, WordNetInventory

    centroids = SenseCentroids.load(a.senses)
    wordnet = a.wordnet or centroids.info.get("wordnet")
    model_path = a.model or centroids.info.get("model")
    if not wordnet or not model_path:
        raise MaskedLMError(f"{a.senses}: records no model/wordnet; pass --model and --wordnet")
    return _load(a, model_path), centroids, WordNetInventory(wordnet)


def run_wsd_eval(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.wsd import evaluate

    model, centroids, inventory = _wsd_setup(a)
    result = evaluate(model, centroids, inventory, a.data, a.gold, **_run_kw(a))
    fallbacks = result.pop("fallbacks")
    print(f"answers: {fallbacks['1nn']} by 1-NN, {fallbacks['mfs']} by MFS fallback, "
          f"{fallbacks['none']} without candidates", file=sys.stderr)
    _print(a, result)
    return 0


def run_wsd_predict(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.wsd import TAGGER_FILE, PosTagger, predict_text

    model, centroids, inventory = _wsd_setup(a)
    if a.pos_tagger:
        centroids.tagger = PosTagger.load(a.pos_tagger)
    if centroids.tagger is None:
        warnings.warn(f"{a.senses}: no {TAGGER_FILE} (wsd train --pos-train UD.conllu writes one): "
                      "candidates from every part of speech", stacklevel=1)
    for text in a.text:
        result = predict_text(model, centroids, inventory, text, **_run_kw(a))
        if a.json:
            print(json.dumps(result))
            continue
        print(text)
        for r in result:
            print(f"  {r['word']:<15} {r['pos'] or '-':<6} {r['sense_key'] or '-':<28} "
                  f"({r['source']}) {r['definition']}")
    return 0


# ----------------------------------------------------------------------------- plot
def run_plot_senses(a: argparse.Namespace) -> int:
    from maskedlm.embeddings.plots import plot_word_senses
    from maskedlm.embeddings.wsd import WordNetInventory

    _positive(a, "max_instances", "clusters")
    semcor = inventory = None
    if a.senses == "semcor":
        if not a.semcor or not a.wordnet:
            raise MaskedLMError("--senses semcor needs --semcor FILE and --wordnet DIR")
        semcor, inventory = a.semcor, WordNetInventory(a.wordnet)
    elif not a.corpus:
        raise MaskedLMError("plot-senses: give --corpus PATH (or --senses semcor)")
    model = _load(a)
    result = plot_word_senses(model, a.word, a.out, corpus=a.corpus or [], semcor=semcor,
                              inventory=inventory, max_instances=a.max_instances,
                              clusters=a.clusters, projection=a.projection, seed=a.seed,
                              layers=a.layers, pool=a.pool, standardize=_stats(a, model),
                              **_run_kw(a))
    _print(a, result)
    return 0


# ----------------------------------------------------------------------------- registration
def _command(sub: argparse._SubParsersAction, name: str, help: str,
             func: Any) -> argparse.ArgumentParser:
    """A subcommand over a model, with ``--json`` output and its handler."""
    p = sub.add_parser(name, help=help)
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=func)
    return p


def register(sub: argparse._SubParsersAction) -> None:
    """Add embed, standardize, anisotropy, similarity, wsd and plot-senses to ``maskedlm``."""
    from maskedlm import options

    p = sub.add_parser("embed", help="contextual vectors of sentences, words or sub-words (.npy)")
    _model_args(p)
    p.add_argument("--input", required=True, help="text file, one sentence per line")
    p.add_argument("--out", required=True, help="x.npy (float32); rows listed in x.rows.jsonl")
    add_fields(p, options.EmbedOptions)
    p.set_defaults(func=run_embed)

    p = sub.add_parser("standardize", help="per-dimension standardization (Timkey & van Schijndel 2021)")
    ssub = p.add_subparsers(dest="standardize_cmd", required=True)
    f = _command(ssub, "fit", "mean and std per dimension of word vectors over a corpus",
                 run_standardize_fit)
    _corpus_args(f, options.CorpusSampleOptions)
    f.add_argument("--out", required=True, help="stats.npz to write")

    p = _command(sub, "anisotropy", "mean cosine of random word-instance pairs (Ethayarajh 2019)",
                 run_anisotropy)
    _corpus_args(p, options.AnisotropyOptions)

    p = sub.add_parser("similarity", help="word similarity in context (WiC) and of word types")
    simsub = p.add_subparsers(dest="similarity_cmd", required=True)
    w = _command(simsub, "wic", "Word-in-Context accuracy: cosine threshold chosen on train", run_wic)
    w.add_argument("--data", required=True, help="WiC folder with train/dev .data.txt and .gold.txt")
    w = _command(simsub, "words", "Spearman vs human ratings (SimLex-999, WordSim-353)", run_words)
    w.add_argument("--pairs", required=True, help="word1<TAB>word2<TAB>score file")
    w.add_argument("--corpus", action="append", required=True, metavar="PATH",
                   help="text the words' contexts come from (repeatable)")
    add_fields(w, options.WordPairOptions)

    w = simsub.add_parser("sts", help="sentence similarity: Spearman/Pearson x100 of cosine vs "
                                      "gold (STS-B, or sentence1<TAB>sentence2<TAB>score)")
    w.add_argument("model", help="a contrastive run, a sentence-transformers directory, a run, a "
                                 "checkpoint or a Hugging Face BERT or ModernBert directory")
    w.add_argument("--data", required=True, help="STS-B file (sts-dev.csv) or a 3-column TSV")
    add_fields(w, options.STSOptions)
    w.add_argument("--json", action="store_true", help="print JSON")
    _run_args(w)
    w.set_defaults(func=run_sts)

    p = sub.add_parser("wsd", help="1-nearest-neighbour word sense disambiguation")
    wsub = p.add_subparsers(dest="wsd_cmd", required=True)
    t = wsub.add_parser("train", help="sense centroids from SemCor")
    _model_args(t)
    t.add_argument("--semcor", required=True, help="semcor3.0.jsonl.gz")
    t.add_argument("--wordnet", required=True, help="WordNet 3.0 dict/ folder")
    t.add_argument("--out", required=True, help="folder for centroids.npz + senses.json")
    t.add_argument("--overwrite", action="store_true",
                   help="write into an --out that exists but is not a sense folder made by "
                        "maskedlm (a run, an input or a file never is replaced)")
    add_fields(t, options.WsdTrainOptions)
    t.set_defaults(func=run_wsd_train)
    for name, helptext in (("eval", "P/R/F1 on Raganato XML + key, with the MFS baseline"),
                           ("predict", "senses of the content words of sentences")):
        e = wsub.add_parser(name, help=helptext)
        e.add_argument("senses", help="folder written by `wsd train`")
        if name == "eval":
            e.add_argument("--data", required=True, help="*.data.xml")
            e.add_argument("--gold", required=True, help="*.gold.key.txt")
        else:
            e.add_argument("text", nargs="+", help="texts, untokenized (one argument each)")
            e.add_argument("--pos-tagger", metavar="JSON",
                           help="part-of-speech tagger (default: the senses folder's pos_tagger.json)")
        e.add_argument("--model", help="model to embed with (default: the one recorded in the senses folder)")
        e.add_argument("--wordnet", help="WordNet dict/ folder (default: the one recorded in the senses folder)")
        e.add_argument("--json", action="store_true", help="print JSON")
        _run_args(e)
        e.set_defaults(func=run_wsd_eval if name == "eval" else run_wsd_predict)

    p = sub.add_parser("plot-senses", help="2-D picture of one word's instances (PNG)")
    _model_args(p)
    p.add_argument("--word", required=True, help="the word whose instances are plotted")
    p.add_argument("--out", required=True, help="a .png file")
    p.add_argument("--corpus", action="append", metavar="PATH",
                   help="text to find the word in (repeatable; default: none, needed unless --senses semcor)")
    p.add_argument("--senses", choices=["semcor"], help="colour by SemCor sense tags (default: by k-means clusters)")
    p.add_argument("--semcor", help="semcor3.0.jsonl.gz, with --senses semcor (default: none)")
    p.add_argument("--wordnet", help="WordNet dict/ folder, with --senses semcor (default: none)")
    add_fields(p, options.PlotOptions)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_plot_senses)


def _corpus_args(p: argparse.ArgumentParser, sample: type) -> None:
    p.add_argument("--corpus", action="append", required=True, metavar="PATH",
                   help="text files/folders (repeatable)")
    add_fields(p, sample)
