"""Shared tiny fixtures: a synthetic corpus, a WordPiece tokenizer and prepared shards.

Tests that read ../shared/data are marked ``data`` (``pytest -m "not data"`` leaves them
out). When the data is missing they are skipped on a developer's machine, but they FAIL
where the environment variable ``CI`` is set (any value but ``""``, ``0`` or ``false``;
GitHub Actions and GitLab set ``CI=true``) or ``MASKEDLM_REQUIRE_DATA=1``: CI always has
../shared, so missing data there is a broken checkout, not a reason to pass.
``MASKEDLM_SHARED_DATA`` points the tests at another copy of the data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MASKEDLM_SHARED_DATA") or REPO.parent / "shared" / "data")


def data_required() -> bool:
    """Whether missing shared data fails a test (CI, or MASKEDLM_REQUIRE_DATA) or skips it."""
    return any(os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
               for name in ("CI", "MASKEDLM_REQUIRE_DATA"))


def missing_data(what: str) -> None:
    """Fail (CI) or skip (elsewhere) a test whose ``what`` under ../shared/data is absent."""
    message = f"needs {what} ({SHARED_DATA})"
    if data_required():
        pytest.fail(f"{message}: missing, and CI / MASKEDLM_REQUIRE_DATA is set", pytrace=False)
    pytest.skip(message)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("data") is not None and not SHARED_DATA.is_dir():
        missing_data("../shared/data")

WORDS = ("the cat dog bird sat ran flew over under near house garden river tree small big "
         "quick slow red green blue happy sad morning evening walked jumped looked found "
         "unbelievable wonderful extraordinary a an and but because while when then").split()


def write_corpus(path: Path, n_docs: int = 60, seed: int = 0) -> Path:
    """Documents separated by blank lines, one sentence per line."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        sents = []
        for _ in range(int(rng.integers(3, 9))):
            words = rng.choice(WORDS, size=int(rng.integers(5, 14)))
            sents.append(" ".join(words).capitalize() + ".")
        docs.append("\n".join(sents))
    path.write_text("\n\n".join(docs) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """{'corpus', 'tokenizer', 'shards'} for a 60-document synthetic corpus."""
    from maskedlm.data.corpus import iter_documents
    from maskedlm.data.shards import prepare_shards
    from maskedlm.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("tiny")
    corpus = write_corpus(root / "corpus.txt")
    tok = train_tokenizer(iter_documents([str(corpus)]), vocab_size=150, show_progress=False)
    tok.save(root / "tok")
    shards = prepare_shards([str(corpus)], root / "tok", root / "shards", show_progress=False,
                            valid_fraction=0.1)
    return {"corpus": corpus, "tokenizer": root / "tok", "shards": shards}


def shared_data(name: str) -> Path:
    """``../shared/data/NAME``; a test without it fails in CI and is skipped elsewhere."""
    path = SHARED_DATA / name
    if not path.exists():
        missing_data(f"../shared/data/{name}")
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``maskedlm ARGV`` in-process: (exit code, stdout, stderr)."""
    from maskedlm.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def written_tokenizer(directory: Path, pieces: list[str]):
    """A tokenizer from a written vocabulary (the special tokens, then ``pieces``) in
    ``directory/tok``. Tests whose corpus is a handful of toy words use it instead of a
    trained one: on such a corpus every merge ties, and the WordPiece trainer breaks ties
    differently from run to run (a different model, huggingface/tokenizers#1794)."""
    from maskedlm.data.tokenizer import SPECIAL_TOKENS, Tokenizer

    (directory / "tok").mkdir()
    vocab = directory / "tok" / "vocab.txt"
    vocab.write_text("".join(f"{t}\n" for t in [*SPECIAL_TOKENS.values(), *pieces]))
    return Tokenizer.load(vocab)


def save_tiny_encoder(path: Path, words: list[str], vocab_size: int = 100) -> Path:
    """A random 2-layer encoder (hidden 32) with a tokenizer trained on ``words``."""
    import torch

    from maskedlm.checkpoint import save_checkpoint
    from maskedlm.data.tokenizer import train_tokenizer
    from maskedlm.models.config import ModelConfig
    from maskedlm.models.heads import BertForPreTraining

    tok = train_tokenizer([[" ".join(words)] * 20], vocab_size=vocab_size, lowercase=True,
                          show_progress=False)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    return save_checkpoint(path, BertForPreTraining(cfg), tok)
