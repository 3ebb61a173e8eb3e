"""What a pretraining run takes, with every default and the recipes' own (torch-free).

``maskedlm pretrain`` derives its flags from :class:`PretrainOptions` and
:class:`~maskedlm.training.config.TrainConfig` (:mod:`maskedlm.cli.args`) and adds no
default of its own, and the recipe's settings are filled here, when the options are
made: ``pretrain(PretrainOptions())`` and ``maskedlm pretrain`` run the same job.

>>> o = PretrainOptions(recipe="bert", size="mini", data="shards/")
>>> o.train.lr, o.train.schedule, o.pre_layer_norm, o.vocab_size
(0.001, 'linear', False, 30000)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

from maskedlm.data.defaults import (
    LANGUAGE_ALPHA,
    PREVIEW_EXAMPLES,
    PREVIEW_SEQUENCES,
    TEXT_FIELD,
    TOKENIZER_SAMPLE_MB,
    VOCAB_SIZE,
)
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ARCHS, GENERATOR_SCALE, RTD_WEIGHT
from maskedlm.training.config import TrainConfig, arg

Recipe = Literal["budget", "bert", "roberta", "spanbert"]
# mlm: the recipe's own objective; rtd: replaced-token detection (ELECTRA, models/rtd.py)
# on the recipe's data and masking (no NSP or SBO head: ELECTRA has neither)
OBJECTIVES = ("mlm", "rtd")

# What ``--recipe budget`` trains with where a flag does not say otherwise; each entry
# was measured on the 2-core CPU (docs/results/budget-recipe.md):
# - pre-LN blocks: stable at high learning rates (cramming, Geiping & Goldstein 2023;
#   ModernBERT, Warner et al. 2024; NeoBERT, Breton et al. 2025);
# - no dropout: one pass over the data does not overfit (cramming, ModernBERT);
# - warmup-stable-decay with a 1-sqrt decay (Hägele et al. 2024), which also lets a
#   wall-clock budget end on a full decay;
# - bf16 autocast where the chip computes it natively;
# - masking rate 30% (data.masking.BUDGET_MASK_RATE).
BUDGET_TRAINING: dict[str, Any] = {"pre_layer_norm": True, "dropout": 0.0, "schedule": "wsd",
                                   "precision": "auto", "lr": 2e-3, "batch_size": 64}

# The embedded default job (no --data, --corpus or --init: the standard library's
# docstrings): a small vocabulary for a small corpus, and a fixed number of steps. 1,600
# steps took 181 s on the idle 2-core CPU: held-out accuracy 0.309 against 0.058 for
# always answering '.' (800 steps: 0.183; docs/results/budget-recipe.md). On a busy
# machine a time budget left it at the unigram plateau; a step budget shows the same
# result everywhere.
DEFAULT_JOB_STEPS = 1600
DEFAULT_JOB_VOCAB = 8000
# otherwise: BERT's vocabulary size, and 1,000 steps unless a --max-time budget decides
DEFAULT_VOCAB = VOCAB_SIZE
DEFAULT_STEPS = 1000
UNBOUNDED_STEPS = 10**9  # with --max-time and no --max-steps: time alone ends the run


def recipe_defaults(recipe: str, size: str, init: str | None) -> dict[str, Any]:
    """Training settings a recipe uses for the options left unset (None); ``None`` values
    keep the model's own (BERT's dropout 0.1, a checkpoint's architecture).

    >>> recipe_defaults("budget", "mini", None)["schedule"], recipe_defaults("bert", "mini", None)["lr"]
    ('wsd', 0.001)
    """
    if recipe == "budget":
        d = dict(BUDGET_TRAINING)
    else:  # small models from scratch tolerate a higher rate than BERT-base's 1e-4
        d = {"pre_layer_norm": False, "dropout": None, "schedule": "linear", "precision": "fp32",
             "lr": 1e-3 if size in ("tiny", "mini") else 5e-4, "batch_size": 32}
    if init:  # continued pretraining: a lower peak rate, as domain-adaptive pretraining
        d["lr"] = 1e-4  # (Gururangan et al. 2020); the architecture is the checkpoint's
        d["pre_layer_norm"] = None
    return d


# The masking flags, shared by ``pretrain`` and ``mask-preview``.
MASKING_FIELDS = ("recipe", "whole_word", "masking_budget", "random_source", "merge_spans",
                  "seq_len", "mask_rate", "mask_replace")


@dataclass
class PretrainOptions:
    """Everything ``maskedlm pretrain`` takes: one field per flag (the optimisation ones in
    ``train``). Fields left ``None`` are filled from the recipe when the options are made."""

    recipe: Recipe = arg("budget", help="budget (default): the most from little compute; bert, "
                         "roberta, spanbert: as their papers")
    whole_word: bool = arg(False, help="bert/roberta: select whole words instead of single subwords")
    masking_budget: Literal["exact", "bernoulli"] | None = arg(
        None, help="exact: ceil(15%%) of maskable tokens (default); bernoulli: per-token coin flips")
    random_source: Literal["uniform", "unigram"] | None = arg(
        None, help="random replacements from the vocabulary (default) or corpus unigram frequencies")
    merge_spans: bool | None = arg(
        None, help="spanbert: merge touching spans for SBO boundaries, as the SpanBERT code "
        "(default: on for --recipe spanbert)")
    seq_len: int = arg(128, help="tokens per training sequence")
    mask_rate: float | None = arg(
        None, help="share of tokens with a target (default: 0.30 for --recipe budget, as "
        "ModernBERT; 0.15 otherwise, as BERT)")
    mask_replace: Literal["80-10-10", "mask"] | None = arg(
        None, help="targets become [MASK]/random/kept 80/10/10 (default) or all [MASK] (NeoBERT)")
    size: str = arg("tiny", help="tiny, mini, small, medium, base, large")
    arch: Literal["bert", "modernbert"] | None = arg(
        None, help="bert (default): the 2018 encoder; modernbert: ModernBERT blocks (pre-LN, "
        "GeGLU, rotary, local/global attention) on packed rows; with --init: the checkpoint's")
    objective: Literal["mlm", "rtd"] = arg(
        "mlm", help="mlm: the recipe's masked-LM objective; rtd: replaced-token detection "
        "(ELECTRA): a small generator fills the masks and the encoder learns to spot its "
        "replacements at every token")
    generator_scale: float = arg(GENERATOR_SCALE, help="rtd: the generator's width as a share of "
                                 "the encoder's (1/4, as ELECTRA-Small)")
    rtd_weight: float = arg(RTD_WEIGHT, help="rtd: lambda in MLM + lambda x RTD (50, as ELECTRA)")
    data: str | None = arg(None, help="shards made by `maskedlm prepare` (default: prepared from "
                           "--corpus, or the standard library's docstrings when neither is given)")
    corpus: list[str] = arg(factory=list, metavar="[LANG=]PATH",
                            help="text to pretrain on (files, folders, globs); repeat for "
                            "several languages")
    tokenizer: str | None = arg(None, help="a tokenizer directory, ours or Hugging Face (default: "
                                "the --init model's, or one trained on the corpus)")
    init: str | None = arg(None, help="continue pretraining from a checkpoint or a Hugging Face "
                           "BERT or ModernBert dir (default: random initialisation)")
    out: str = arg("runs/default", help="run directory (checkpoint, metrics, curves)")
    overwrite: bool = arg(False, help="write into an output directory that exists but is not a "
                          "pretraining run made by maskedlm (without it such a directory is "
                          "refused; a run directory, an input or an existing file never is "
                          "replaced; docs/reliability.md)")
    vocab_size: int | None = arg(None, help="WordPiece vocabulary trained on the corpus (default: "
                                 f"{DEFAULT_JOB_VOCAB} for the default job, {DEFAULT_VOCAB} otherwise)")
    uncased: bool = arg(False, help="lowercase and strip accents")
    one_doc_per_line: bool = arg(False, help="each line is a document (else blank lines separate "
                                 "documents)")
    text_field: str = arg(TEXT_FIELD, help="the parquet column or JSON key that holds the text")
    alpha: float = arg(LANGUAGE_ALPHA, help="language sampling exponent (XLM-R's 0.3)")
    pre_layer_norm: bool | None = arg(
        None, flag="--pre-ln", help="pre-LayerNorm blocks (default: on for --recipe budget; "
        "post-LN, as BERT, otherwise)")
    dropout: float | None = arg(None, help="dropout in the encoder (default: 0 for --recipe "
                                "budget, 0.1 otherwise)")
    eval_sequences: int = arg(256, help="held-out sequences per evaluation")
    device: str | None = arg(None, help="cpu or cuda (default: cuda when available)")
    resume: bool | Literal["auto"] = arg(
        False, optional_value="auto", metavar="auto",
        help="continue the run in --out (a stopped run exits with code 75); --resume auto: "
        "continue if --out holds one, else start fresh, so that a scheduler or torchrun "
        "--max-restarts can rerun the same command")
    train: TrainConfig = arg(factory=TrainConfig, help="optimisation settings", cli=False)
    command: list[str] | None = arg(None, help="the command line, recorded in run.json for "
                                    "model cards", cli=False)

    @property
    def default_job(self) -> bool:
        """No --data, --corpus or --init: the embedded corpus (the standard library's docstrings)."""
        return not (self.data or self.corpus or self.init)

    def __post_init__(self) -> None:
        from maskedlm.data.instances import RECIPES, check_seq_len  # NumPy: not for --help

        if self.recipe not in RECIPES:
            raise MaskedLMError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if self.objective not in OBJECTIVES:
            raise MaskedLMError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not 0.0 < self.generator_scale <= 1.0:
            raise MaskedLMError(f"--generator-scale must be in (0, 1], got {self.generator_scale}")
        if not self.rtd_weight > 0.0:
            raise MaskedLMError(f"--rtd-weight must be > 0, got {self.rtd_weight}")
        check_seq_len(self.seq_len)
        if self.mask_rate is not None and not 0.0 < self.mask_rate < 1.0:
            raise MaskedLMError(f"--mask-rate must be in (0, 1), got {self.mask_rate}")
        if self.arch is not None and self.arch not in ARCHS:
            raise MaskedLMError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.arch == "modernbert":
            if self.recipe == "bert":
                raise MaskedLMError("--recipe bert trains next sentence prediction on sentence "
                                    "pairs, which packed --arch modernbert rows cannot hold; use "
                                    "--recipe roberta, spanbert or budget")
            if self.pre_layer_norm is False:
                raise MaskedLMError("--no-pre-ln: ModernBERT blocks are pre-LN by design; "
                                    "post-LN is --arch bert")
        self._fill_defaults()

    def _fill_defaults(self) -> None:
        """The recipe's settings (and the default job's) for every field left ``None``."""
        d = recipe_defaults(self.recipe, self.size, self.init)
        self.train = dataclasses.replace(self.train)  # a copy: the caller's stays as given
        if self.pre_layer_norm is None:
            self.pre_layer_norm = d["pre_layer_norm"]
        if self.dropout is None:
            self.dropout = d["dropout"]
        if self.vocab_size is None:
            self.vocab_size = DEFAULT_JOB_VOCAB if self.default_job else DEFAULT_VOCAB
        t = self.train
        for name in ("lr", "batch_size", "schedule", "precision"):
            if getattr(t, name) is None:
                setattr(t, name, d[name])
        if t.max_steps is None:
            t.max_steps = (UNBOUNDED_STEPS if t.max_time else
                           DEFAULT_JOB_STEPS if self.default_job else DEFAULT_STEPS)


# ----------------------------------------------------------------------------- task options
# The options of each fine-tuning task, with their defaults: the task classes take their
# keyword defaults from these (``SpanOptions.max_span_length``), and ``maskedlm finetune
# TASK`` derives its flags from them.
@dataclass
class ClassifyOptions:
    """``finetune classify`` and ``finetune pair``."""

    pool: Literal["cls", "mean"] = arg("cls", help="classify from the [CLS] vector or the mean of "
                                       "the last layer (encoders pretrained without NSP)")
    dropout: float = arg(0.1, help="dropout in the task head")


@dataclass
class TagOptions:
    """``finetune tag``: per-token tags (BIO NER, POS) from CoNLL / CoNLL-U."""

    label_subwords: Literal["all", "first"] = arg("all", help="train on every sub-word of a word "
                                                  "or on its first only")
    viterbi: bool = arg(True, help="BIO-constrained Viterbi decoding (entity tag sets only)")
    dropout: float = arg(0.1, help="dropout in the task head")


@dataclass
class SpanOptions:
    """``finetune spans``: span-based (nested) NER over enumerated spans."""

    max_span_length: int = arg(8, help="longest span, in words")
    # span vector: end points, mean, or attention-pooled (Lee et al. 2017)
    span_repr: Literal["boundary", "mean", "attention"] = arg(
        "attention", help="span vector: end points, mean, or attention-pooled (Lee et al. 2017)")
    flat: bool = arg(False, help="remove overlapping spans (flat NER)")
    null_weight: float = arg(1.0, help="loss weight of NULL spans")
    null_sample: float = arg(1.0, help="fraction of NULL spans kept per training batch")
    threshold: float | None = arg(None, help="entity when 1 - p(NULL) >= this (default: argmax)")
    dropout: float = arg(0.1, help="dropout in the task head")


@dataclass
class QAOptions:
    """``finetune qa``: extractive question answering (SQuAD)."""

    doc_stride: int = arg(128, help="tokens shared by consecutive windows of a long context")
    max_query_length: int = arg(64, help="question subwords kept")
    max_answer_length: int = arg(30, help="longest answer, in subwords")
    threshold: float = arg(0.0, flag="--null-threshold",
                           help="SQuAD v2.0: no answer when the null score beats the best span by more")


@dataclass
class ContrastiveOptions:
    """``finetune contrastive``: sentence embeddings with in-batch negatives."""

    pool: Literal["mean", "cls", "max"] = arg("mean", help="sentence vector from the last layer "
                                              "(unit length)")
    # SimCSE's temperature (Gao, Yao & Chen 2021, sec. 3) = sentence-transformers' scale 20
    temperature: float = arg(0.05, help="of the InfoNCE softmax (SimCSE's 0.05 = "
                             "sentence-transformers' scale 20)")
    matryoshka: str = arg("", metavar="D,D,..", help="also train the first D dimensions as "
                          "embeddings, e.g. 256,128,64 (default: none)")
    chunk: int = arg(64, help="sentences per forward pass, sorted by length")
    grad_cache: bool | None = arg(None, help="gradient cache (Gao et al. 2021): memory of one "
                                  "chunk, not of the batch (default: when a batch holds more "
                                  "than 4 chunks)")
    encoder_dropout: float | None = arg(0.1, help="dropout of the encoder while training "
                                        "(SimCSE's positives differ by their dropout masks)")
    format: Literal["auto", "sentences", "pairs", "nli"] = arg(
        "auto", help="of --train/--dev; nli: SNLI/MultiNLI CSV -> (premise, entailment, "
        "contradiction) triples; auto: by extension (.txt, .tsv/.jsonl, .csv)")


TASK_OPTIONS: dict[str, type] = {"classify": ClassifyOptions, "pair": ClassifyOptions,
                                 "tag": TagOptions, "spans": SpanOptions, "qa": QAOptions,
                                 "contrastive": ContrastiveOptions}


@dataclass
class ContrastiveData:
    """Where ``finetune contrastive`` takes its training pairs and dev split from
    (:func:`maskedlm.tasks.contrastive.training_pairs`)."""

    corpus: list[str] = arg(factory=list, metavar="PATH",
                            help="instead of --train: SimCSE on the sentences of a pretraining "
                            "corpus (files, folders, globs; repeatable)")
    max_sentences: int = arg(100000, help="with --corpus: a uniform sample of this many "
                             "sentences (5..64 words)")
    dev_fraction: float = arg(0.0, help="hold out this seeded share of the training pairs as "
                              "the dev split (instead of --dev)")


@dataclass
class QAData:
    """Where ``finetune qa`` takes its dev split from (:func:`maskedlm.tasks.qa.hold_out_articles`)."""

    dev_articles: int = arg(0, help="hold out the last N articles of --train as the dev split "
                            "(instead of --dev)")


# ----------------------------------------------------------------------------- using a run
Backend = Literal["torch", "onnx"]


@dataclass
class RunOptions:
    """How a model is run over text: ``evaluate``, ``predict`` and the embedding commands
    (:func:`maskedlm.api.load`, :func:`maskedlm.tasks.finetune.load_task`)."""

    backend: Backend = arg("torch", help="onnx: run a directory written by `maskedlm "
                           "export-onnx` with ONNX Runtime")
    device: str = arg("cpu", help="cpu or cuda")
    progress: bool = arg(True, help="a progress bar on long work")


@dataclass
class EvaluateOptions:
    """``maskedlm evaluate RUN --data FILE``: the run's metrics on a labelled file."""

    batch_size: int = arg(64, help="examples per forward pass")
    viterbi: bool | None = arg(None, help="tag: BIO-constrained Viterbi or argmax decoding "
                               "(default: as trained)")
    threshold: float | None = arg(None, help="spans: entity when 1 - p(NULL) >= this; qa: no "
                                  "answer when the null score beats the best span by more "
                                  "(default: the saved one)")
    predictions: str | None = arg(None, metavar="FILE", help="qa: write the answers as {id: text} "
                                  "JSON for the official SQuAD script (default: none)")


@dataclass
class FillMaskOptions:
    """``maskedlm fill-mask`` (:meth:`maskedlm.api.Encoder.fill_mask`)."""

    top_k: int = arg(5, help="candidates per [MASK]")


@dataclass
class ExportOptions:
    """``export-st`` and ``export-onnx`` (:mod:`maskedlm.export`)."""

    pool: Literal["mean", "cls", "max"] = arg("mean", help="export-st: sentence vector from the "
                                              "last layer's tokens")
    normalize: bool = arg(False, help="export-st: unit-length vectors (a Normalize module)")
    quantize: Literal["none", "int8"] = arg("none", help="export-onnx: int8 is ONNX Runtime's "
                                            "dynamic quantization of the weights")


# ----------------------------------------------------------------------------- data commands
@dataclass
class TokenizerOptions:
    """``maskedlm tokenizer train`` (and the tokenizer ``pretrain --corpus`` trains)."""

    vocab_size: int = arg(VOCAB_SIZE, help="WordPiece vocabulary size")
    sample_mb: float = arg(TOKENIZER_SAMPLE_MB, help="train on a seeded sample of about this many MB of the "
                           "corpus files (each document kept with probability MB / corpus size "
                           "on disk, in every file); a smaller corpus is read whole (0: always "
                           "whole)")
    seed: int = arg(0, help="seed of the language sampling and of the sample")


@dataclass
class PrepareOptions:
    """``maskedlm prepare`` (:func:`maskedlm.data.shards.prepare_shards`)."""

    workers: int | None = arg(None, help="processes that tokenize files in parallel (default: "
                              "the cores available); the shards are the same for any number")
    seq_len: int = arg(512, help="checked only (8..4096): sequences are cut when pretraining "
                       "(pretrain --seq-len)")
    seed: int = arg(0, help="seed of the train/valid split")


@dataclass
class PreviewOptions:
    """``maskedlm mask-preview`` (:func:`maskedlm.data.preview.mask_preview`); the masking
    itself takes :class:`PretrainOptions`' fields."""

    n: int = arg(PREVIEW_EXAMPLES, help="examples to print")
    stats: bool = arg(False, help="statistics over --sequences sequences")
    sequences: int = arg(PREVIEW_SEQUENCES, help="sequences the statistics cover")


# ----------------------------------------------------------------------------- embeddings
# The embedding functions take their keyword defaults from these
# (``layers=VectorOptions.layers``) and the embedding commands derive their flags from them.
@dataclass
class VectorOptions:
    """Which vectors: the layers mixed, how sub-words are pooled, an optional z-scoring."""

    layers: str = arg("last", help="last, last4-sum, last4-mean or N,M,.. (0 = embeddings; "
                      "averaged)")
    pool: Literal["mean", "first", "cls"] = arg("mean", help="a word's sub-words: mean or first; "
                                                "a sentence: mean or cls")
    standardize: str | None = arg(None, metavar="STATS.npz", help="z-score with `standardize "
                                  "fit` stats (default: raw vectors)")
    max_length: int | None = arg(None, help="window length in tokens (default: the model's "
                                 "positions)")
    batch_tokens: int | None = arg(None, help="padded tokens per batch (default: 512 on CPU, "
                                   "16384 on GPU)")


@dataclass
class EmbedOptions:
    """``maskedlm embed`` (:func:`maskedlm.embeddings.embed.embed_to_file`)."""

    unit: Literal["word", "subword", "sentence"] = arg("word", help="one vector per word, per "
                                                       "sub-word or per sentence")
    pretokenized: bool = arg(False, help="words are separated by spaces")


@dataclass
class STSOptions:
    """``maskedlm similarity sts`` (:func:`maskedlm.embeddings.sts.evaluate_sts`)."""

    pool: Literal["mean", "cls", "max"] | None = arg(
        None, help="sentence vector (default: as the model was trained; mean for a raw encoder)")
    score_range: str | None = arg(None, metavar="LO,HI", help="gold scores of a 3-column TSV "
                                  "must lie in it (default: any; STS-B: 0,5)")


@dataclass
class CorpusSampleOptions:
    """A seeded sample of a corpus's sentences (``standardize fit``)."""

    max_sentences: int = arg(5000, help="uniform sample of sentences (3..64 words)")
    seed: int = arg(0, help="seed of the sentence sample")


@dataclass
class AnisotropyOptions:
    """``maskedlm anisotropy`` (:func:`maskedlm.embeddings.pooling.corpus_anisotropy`)."""

    max_sentences: int = arg(1000, help="uniform sample of sentences (3..64 words)")
    seed: int = arg(0, help="seed of the sentence sample and of the pairs")
    pairs: int = arg(10000, help="random pairs averaged")


@dataclass
class WordPairOptions:
    """``maskedlm similarity words`` (:func:`maskedlm.embeddings.similarity.type_vectors`)."""

    max_occurrences: int = arg(10, help="contexts averaged per word")


@dataclass
class WsdTrainOptions:
    """``maskedlm wsd train`` (:func:`maskedlm.embeddings.wsd.train_from_semcor`)."""

    max_sentences: int = arg(0, help="first N sentences only (0: all)")
    pos_train: list[str] | None = arg(None, metavar="CONLLU", help="Universal Dependencies "
                                      "CoNLL-U file(s) to train the part-of-speech tagger `wsd "
                                      "predict` uses (repeatable; e.g. ud_en_lines + ud_en_partut "
                                      "train; default: none, and predict takes every part of "
                                      "speech)")


@dataclass
class PlotOptions:
    """``maskedlm plot-senses`` (:func:`maskedlm.embeddings.plots.plot_word_senses`)."""

    max_instances: int = arg(200, help="instances plotted at most")
    clusters: int = arg(3, help="k-means clusters (without --senses)")
    projection: Literal["auto", "umap", "pca"] = arg("auto", help="auto: UMAP when umap-learn is "
                                                     "installed, else PCA")
    seed: int = arg(0, help="seed of sampling, k-means and UMAP")


# ----------------------------------------------------------------------------- scorecard
DATA_ROOT = "../shared/data"  # where the scorecard looks for its datasets ($MASKEDLM_DATA first)


@dataclass
class ScorecardOptions:
    """``maskedlm scorecard MODEL`` (:func:`maskedlm.scorecard.scorecard`)."""

    tasks: str | None = arg(None, help="comma-separated task names (default: all of them; a "
                            "wrong name gets the list)")
    quick: bool = arg(False, help="capped training per task (~15 min for a mini model on 2 CPU "
                      "cores)")
    out: str | None = arg(None, help="directory for scorecard.json/.md/.png (default: "
                          "runs/scorecard-NAME)")
    overwrite: bool = arg(False, help="write the card into an --out that exists but is not a "
                          "scorecard folder (only the card's files are written there; a run is "
                          "never used)")
    name: str | None = arg(None, help="the card's column name (default: --out's name)")
    compare: list[str] = arg(factory=list, metavar="CARD.json", help="earlier scorecards to put "
                             "side by side (repeatable)")
    data_root: str | None = arg(None, help=f"folder holding the task datasets (default: "
                                f"$MASKEDLM_DATA or {DATA_ROOT})")
    file: list[str] = arg(factory=list, metavar="TASK:SPLIT=PATH", help="use PATH for one task's "
                          "split, e.g. sst2:train=my.tsv (repeatable)")
    random_init: bool = arg(False, help="score the model's architecture and tokenizer with fresh "
                            "random weights")
    limit: int | None = arg(None, help="cap every task's training examples, for smoke tests; "
                            "recorded in the card (default: no cap)")
    device: str | None = arg(None, help="cpu or cuda (default: cuda when available)")
    progress: bool = arg(True, help="a progress bar per task")


def data_root(given: str | os.PathLike[str] | None = None) -> str:
    """The scorecard's dataset folder: ``given``, else ``$MASKEDLM_DATA``, else ../shared/data.

    >>> data_root("my/data")
    'my/data'
    """
    return str(given or os.environ.get("MASKEDLM_DATA") or DATA_ROOT)
