"""Extractive question answering (SQuAD): a start/end head over the context tokens.

Each question is read as ``[CLS] question [SEP] context [SEP]`` with segment ids 0 and 1
and a linear layer gives every token a start and an end logit (Devlin et al. 2019, sec.
4.2). A context longer than ``max_length`` is cut into windows that overlap by
``doc_stride`` tokens (the meaning transformers' ``run_qa`` gives the flag; Google's
``run_squad`` uses it as the step between windows instead). A training window that does
not hold the whole answer targets ``[CLS]`` (position 0). Answers go from characters to
tokens and back only through the tokenizer's character offsets, never by re-tokenising a
string. Decoding takes the span with the largest start + end logit over all windows of a
question (start <= end, at most ``max_answer_length`` tokens, inside the context).

SQuAD v2.0: a question is unanswerable when the ``[CLS]`` null score ``s_0 + e_0``
(smallest over the windows) beats the best span by more than ``threshold`` (Devlin et al.
2019, sec. 4.3); :meth:`QATask.calibrate` picks the threshold with the best dev F1, as the
official v2.0 script's best-threshold search does.

Scores follow the official ``evaluate-v1.1.py``: exact match and token F1 after its answer
normalisation (lowercase, no punctuation, no a/an/the, single spaces), the maximum over
the reference answers, in percent; an empty answer scores as in the v2.0 script.

>>> normalize_answer("The  Norman conquest!")
'norman conquest'
>>> token_f1("the Normans", "Normans of France")
0.5
>>> windows(10, room=4, stride=2)
[(0, 4), (2, 6), (4, 8), (6, 10)]
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.options import QAOptions
from maskedlm.tasks.common import Batch, Feature, TaskModel, encoder_inputs, run_batches
from maskedlm.tasks.data import QAExample, read_squad

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


# ----------------------------------------------------------------------------- scoring
def normalize_answer(s: str) -> str:
    """Lowercase, drop punctuation, then the articles a/an/the, then extra whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 of two normalised answers; two empty answers agree (v2.0 rule)."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    same = sum((Counter(p) & Counter(g)).values())
    if not same:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def gold_answers(ex: QAExample) -> list[str]:
    return [t for t, _ in ex.answers] or [""]  # unanswerable: the empty answer is right


def squad_scores(predictions: dict[str, str], examples: list[QAExample]) -> dict[str, Any]:
    """Exact match and F1 in percent, maximised over each question's references; with
    unanswerable questions present, the same split into answerable / unanswerable.

    >>> ex = [QAExample("q1", "Who?", "Rollo led them.", [("Rollo", 0)])]
    >>> squad_scores({"q1": "rollo"}, ex)["exact_match"]
    100.0
    """
    em, f1 = [], []
    for ex in examples:
        pred = predictions.get(ex.id, "")
        em.append(max(exact_match(pred, g) for g in gold_answers(ex)))
        f1.append(max(token_f1(pred, g) for g in gold_answers(ex)))
    out: dict[str, Any] = {"exact_match": 100 * float(np.mean(em)), "f1": 100 * float(np.mean(f1)),
                           "examples": len(examples)}
    impossible = np.array([ex.impossible for ex in examples])
    if impossible.any():
        for name, keep in (("has_ans", ~impossible), ("no_ans", impossible)):
            out[f"{name}_exact_match"] = 100 * float(np.mean(np.array(em)[keep])) if keep.any() else 0.0
            out[f"{name}_f1"] = 100 * float(np.mean(np.array(f1)[keep])) if keep.any() else 0.0
            out[f"{name}_examples"] = int(keep.sum())
    return out


# ----------------------------------------------------------------------------- windows
def hold_out_articles(examples: list[QAExample], n: int, where: str = "--train"
                      ) -> tuple[list[QAExample], list[QAExample]]:
    """(train, dev): the last ``n`` articles of ``examples`` (in file order) become the dev
    split, so that no context is shared between the two."""
    titles = list(dict.fromkeys(ex.title for ex in examples))
    if not 0 < n < len(titles):
        raise MaskedLMError(f"--dev-articles {n}: {where} has {len(titles)} articles; "
                            "keep at least one for training")
    held = set(titles[-n:])
    return ([ex for ex in examples if ex.title not in held],
            [ex for ex in examples if ex.title in held])


def windows(n_tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges ``[s, e)`` of at most ``room`` tokens covering ``n_tokens``, each
    overlapping the previous one by ``stride`` tokens (one empty window for no tokens)."""
    if n_tokens > room and stride >= room:
        raise MaskedLMError(f"--doc-stride {stride} must be smaller than the {room} context "
                            "tokens a window holds; lower it or raise --max-length")
    out, s = [], 0
    while True:
        e = min(s + room, n_tokens)
        out.append((s, e))
        if e >= n_tokens:
            return out
        s = e - stride


def char_to_tokens(offsets: np.ndarray, start: int, end: int) -> tuple[int, int] | None:
    """First and last token (inclusive) covering characters ``[start, end)``; None when no
    token does (an answer of whitespace only)."""
    first = int(np.searchsorted(offsets[:, 1], start, side="right"))  # first token ending after start
    last = int(np.searchsorted(offsets[:, 0], end, side="left")) - 1   # last token starting before end
    return (first, last) if first <= last else None


class QAHead(nn.Module):
    """One linear layer: (B, T, H) -> (B, T, 2) start and end logits. Named as transformers'
    ``BertForQuestionAnswering.qa_outputs`` so an export maps one to one."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)
        nn.init.normal_(self.qa_outputs.weight, std=0.02)
        nn.init.zeros_(self.qa_outputs.bias)

    def forward(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.qa_outputs(hidden)


def best_span(start: np.ndarray, end: np.ndarray, max_answer_length: int
              ) -> tuple[int, int, float, float]:
    """Best ``(i, j)`` with ``i <= j < i + max_answer_length`` over one window's context
    logits: ``(i, j, s_i + e_j, log-sum-exp over all valid spans)``."""
    n = len(start)
    scores = start[:, None] + end[None, :]  # (n, n)
    width = np.arange(n)[None, :] - np.arange(n)[:, None]
    scores = np.where((width >= 0) & (width < max_answer_length), scores, -np.inf)
    flat = int(scores.argmax())
    i, j = divmod(flat, n)
    best = float(scores[i, j])
    log_z = best + float(np.log(np.exp(scores - best).sum()))
    return i, j, best, log_z


# ----------------------------------------------------------------------------- the task
class QATask:
    """Extractive QA over SQuAD-format JSON; ``labels`` stays empty (positions, not classes)."""

    kind = "qa"
    metric = "f1"

    def __init__(self, labels: list[str] | None = None, doc_stride: int = QAOptions.doc_stride,
                 max_query_length: int = QAOptions.max_query_length,
                 max_answer_length: int = QAOptions.max_answer_length,
                 version_2: bool = False, threshold: float = QAOptions.threshold) -> None:
        for name, v in (("doc-stride", doc_stride), ("max-query-length", max_query_length),
                        ("max-answer-length", max_answer_length)):
            if v < (0 if name == "doc-stride" else 1):
                raise MaskedLMError(f"--{name} must be {'>= 0' if name == 'doc-stride' else 'positive'}, got {v}")
        self.labels: list[str] = list(labels or [])
        self.doc_stride, self.max_query_length = doc_stride, max_query_length
        self.max_answer_length, self.version_2, self.threshold = max_answer_length, version_2, threshold
        self.predictions: dict[str, str] = {}  # {id: answer} of the last evaluate()

    def options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("doc_stride", "max_query_length", "max_answer_length",
                                              "version_2", "threshold")}

    def read(self, path: str) -> list[QAExample]:
        return read_squad(path)

    def fit_labels(self, examples: list[QAExample]) -> None:
        """No labels to fit; remember whether the data has unanswerable questions (v2.0)."""
        self.version_2 = self.version_2 or any(ex.impossible for ex in examples)

    # ------------------------------------------------------------------ features
    def featurize(self, examples: list[QAExample], tok: Tokenizer, max_length: int) -> list[Feature]:
        """One feature per window: ids, segments, target positions (0 = [CLS] when the answer
        is not inside) and, for decoding, the window's context offsets."""
        questions = tok.hf.encode_batch([ex.question for ex in examples], add_special_tokens=False)
        contexts = sorted({ex.context for ex in examples})
        encoded = tok.hf.encode_batch(contexts, add_special_tokens=False)
        by_context = {c: (np.asarray(e.ids, dtype=np.int64), np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2))
                      for c, e in zip(contexts, encoded, strict=True)}
        feats: list[Feature] = []
        for k, (ex, q) in enumerate(zip(examples, questions, strict=True)):
            q_ids = q.ids[:self.max_query_length]
            ids, offsets = by_context[ex.context]
            target = None
            if ex.answers:
                text, a = ex.answers[0]  # train on the first reference (the usual practice)
                target = char_to_tokens(offsets, a, a + len(text))
            head = [tok.cls_id, *q_ids, tok.sep_id]
            room = max_length - len(head) - 1
            if room < 1:
                raise MaskedLMError(f"{ex.where}: --max-length {max_length} leaves no room for the "
                                    f"context after {len(head)} question tokens; raise it or lower "
                                    "--max-query-length")
            for s, e in windows(len(ids), room, self.doc_stride):
                start = end = 0
                if target is not None and s <= target[0] and target[1] < e:
                    start, end = len(head) + target[0] - s, len(head) + target[1] - s
                feats.append({"input_ids": head + ids[s:e].tolist() + [tok.sep_id],
                              "token_type_ids": [0] * len(head) + [1] * (e - s + 1),
                              "start_positions": start, "end_positions": end, "example": k,
                              "context_start": len(head), "offsets": offsets[s:e]})
        return feats

    def make_head(self, config: ModelConfig) -> nn.Module:
        return QAHead(config.hidden_size)

    def collate(self, feats: list[Feature], pad_id: int, rng: np.random.Generator | None) -> Batch:
        batch = encoder_inputs(feats, pad_id)
        for name in ("start_positions", "end_positions"):
            batch[name] = torch.tensor([f[name] for f in feats], dtype=torch.long)
        return batch

    def loss(self, model: TaskModel, batch: Batch) -> torch.Tensor:
        """Mean of the start and end cross-entropies (as ``BertForQuestionAnswering``)."""
        logits = model.head(model.hidden(batch), batch).float()
        return (F.cross_entropy(logits[..., 0], batch["start_positions"])
                + F.cross_entropy(logits[..., 1], batch["end_positions"])) / 2

    # ------------------------------------------------------------------ decoding
    def answers(self, model: TaskModel, examples: list[QAExample], tok: Tokenizer,
                max_length: int, batch_size: int) -> list[dict[str, Any]]:
        """Per question: the best span over its windows (``answer``, char ``start``/``end``,
        ``score`` = its probability among the valid spans of its window) and ``null_diff``,
        the null score minus the best span score (v2.0 decides with it)."""
        feats = self.featurize(examples, tok, max_length)
        best: list[tuple[float, float, int, int, int] | None] = [None] * len(examples)
        null = np.full(len(examples), np.inf)
        for idx, _, out in run_batches(model, self, feats, tok.pad_id, batch_size):
            logits = out.float().numpy()
            for b, f_i in enumerate(idx):
                f = feats[f_i]
                c0, n = f["context_start"], len(f["offsets"])
                k = f["example"]
                null[k] = min(null[k], float(logits[b, 0, 0] + logits[b, 0, 1]))
                if n == 0:
                    continue
                i, j, score, log_z = best_span(logits[b, c0:c0 + n, 0], logits[b, c0:c0 + n, 1],
                                               self.max_answer_length)
                if best[k] is None or score > best[k][0]:
                    best[k] = (score, log_z, int(f_i), i, j)
        results = []
        for k, ex in enumerate(examples):
            if best[k] is None:  # an empty context: nothing to point at
                results.append({"answer": "", "start": None, "end": None, "score": 0.0,
                                "null_diff": float("inf")})
                continue
            score, log_z, f_i, i, j = best[k]
            offs = feats[f_i]["offsets"]
            a, b = int(offs[i, 0]), int(offs[j, 1])
            results.append({"answer": ex.context[a:b], "start": a, "end": b,
                            "score": float(np.exp(score - log_z)), "null_diff": float(null[k] - score)})
        return results

    def _decide(self, result: dict[str, Any], threshold: float | None = None) -> str:
        t = self.threshold if threshold is None else threshold
        return "" if self.version_2 and result["null_diff"] > t else result["answer"]

    def calibrate(self, model: TaskModel, examples: list[QAExample], tok: Tokenizer,
                  max_length: int, batch_size: int) -> dict[str, Any]:
        """Choose the null threshold with the best F1 on labelled ``examples`` and keep it
        (a sweep over the questions' own null differences, as the official v2.0 script)."""
        if not self.version_2:
            raise MaskedLMError("--calibrate applies to SQuAD v2.0 data (is_impossible questions)")
        results = self.answers(model, examples, tok, max_length, batch_size)
        span_f1 = np.array([max(token_f1(r["answer"], g) for g in gold_answers(ex))
                            for r, ex in zip(results, examples, strict=True)])
        null_f1 = np.array([float(ex.impossible) for ex in examples])
        diffs = np.array([r["null_diff"] for r in results])
        candidates = np.unique(np.concatenate([[-np.inf], diffs[np.isfinite(diffs)]]))
        f1 = [float(np.where(diffs > t, null_f1, span_f1).mean()) for t in candidates]
        k = int(np.argmax(f1))
        self.threshold = float(candidates[k]) if np.isfinite(candidates[k]) else -1e9
        return {"threshold": self.threshold, "f1": 100 * f1[k]}

    def evaluate(self, model: TaskModel, examples: list[QAExample], tok: Tokenizer,
                 max_length: int, batch_size: int) -> dict[str, Any]:
        """SQuAD exact match and F1 (percent); the answers stay in ``self.predictions``."""
        results = self.answers(model, examples, tok, max_length, batch_size)
        self.predictions = {ex.id: self._decide(r) for ex, r in zip(examples, results, strict=True)}
        out = squad_scores(self.predictions, examples)
        if self.version_2:
            out["threshold"] = self.threshold
        return out

    def predict(self, model: TaskModel, inputs: list[Any], tok: Tokenizer, max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        """Inputs are ``(question, context)`` pairs; the answer with its character offsets."""
        examples = []
        for n, x in enumerate(inputs):
            if not (isinstance(x, tuple | list) and len(x) == 2 and all(isinstance(s, str) for s in x)):
                raise MaskedLMError(f"input {n}: a QA run takes (question, context) pairs")
            if not x[1].strip():
                raise MaskedLMError(f"input {n}: empty context")
            examples.append(QAExample(str(n), x[0], x[1], where=f"input {n}"))
        out = []
        for r in self.answers(model, examples, tok, max_length, batch_size):
            if self._decide(r) == "" and r["answer"]:
                r = {**r, "answer": "", "start": None, "end": None}
            out.append({k: r[k] for k in ("answer", "start", "end", "score")})
        return out
