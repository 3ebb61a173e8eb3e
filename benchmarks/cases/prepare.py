"""`prepare` against the pipeline a user would otherwise write with Hugging Face `datasets`.

    python benchmarks/run.py --cases prepare --prepare-mb 100 --threads 2
    python benchmarks/cases/prepare.py --mb 5000 --formats parquet,jsonl.zst --no-peer

The corpus is Gutenberg (``../shared/data/gutenberg``) cut into documents of about 4 KB
and written, copy after copy, into parquet (and ``.jsonl.zst``) files of about 100 MB of
text each, until it holds ``--mb`` MB of text; it lives in ``benchmarks/.cache`` and is
deleted after the run (``--keep`` keeps it). Both sides use the same `tokenizers`
WordPiece (16k, trained by ``maskedlm tokenizer train`` on the corpus's first file):

* ours: ``prepare_shards(files, workers=N)`` -- read, decompress, split sentences,
  tokenize, word starts, hold-out split, shards written and checksummed;
* peer: ``load_dataset("parquet")`` + ``.map(encode_batch, batched=True, num_proc=N)`` and
  the ids flattened into one uint16 file (whole documents, no sentence split).

Each side runs in a fresh process with ``TOKENIZERS_PARALLELISM=false`` (N processes are
the parallelism), timed end to end; a monitor thread samples the RSS of the process and
all its children every 0.1 s and reports the peak of their sum.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
CACHE = REPO / "benchmarks" / ".cache"
DEFAULT_DATA = REPO.parent / "shared" / "data"
FILE_MB = 25.0  # MB of text per generated file (--file-mb)
DOC_CHARS = 4000  # characters per generated document (a web page)


# --------------------------------------------------------------------------- corpus

def _documents(source: Path) -> list[str]:
    docs, lines, size = [], [], 0
    with gzip.open(source, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            lines.append(line)
            size += len(line)
            if size >= DOC_CHARS:
                docs.append("\n".join(lines))
                lines, size = [], 0
    return docs


def make_corpus(data_root: Path, folder: Path, mb: float, formats: list[str],
                file_mb: float = FILE_MB) -> dict[str, Any]:
    """Write about ``mb`` MB of text as files of ``file_mb`` MB, cycling through ``formats``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    docs = _documents(data_root / "gutenberg" / "gutenberg_train.txt.gz")
    folder.mkdir(parents=True, exist_ok=True)
    written, index, cursor = 0, 0, 0
    target = mb * 1e6
    while written < target:
        batch, size = [], 0
        while size < min(file_mb * 1e6, target - written):
            doc = docs[cursor % len(docs)]
            batch.append(doc)
            size += len(doc.encode("utf-8"))
            cursor += 1
        fmt = formats[index % len(formats)]
        path = folder / f"part-{index:05d}.{fmt}"
        if fmt == "parquet":
            pq.write_table(pa.table({"id": list(range(len(batch))), "text": batch}), path,
                           row_group_size=2048)
        else:
            lines = "".join(json.dumps({"text": d}) + "\n" for d in batch).encode("utf-8")
            path.write_bytes(zstandard.ZstdCompressor(level=3).compress(lines))
        written += size
        index += 1
    disk = sum(p.stat().st_size for p in folder.iterdir())
    return {"files": index, "text_mb": round(written / 1e6, 1), "disk_mb": round(disk / 1e6, 1)}


def make_tokenizer(folder: Path, out: Path) -> Path:
    if not (out / "tokenizer.json").is_file():
        first = sorted(folder.iterdir())[0]
        subprocess.run([sys.executable, "-m", "maskedlm.cli", "tokenizer", "train", "--corpus",
                        str(first), "--vocab-size", "16000", "--sample-mb", "20", "--out",
                        str(out)], check=True, env=_env(), capture_output=True)
    return out


# --------------------------------------------------------------------------- measuring

def _env() -> dict[str, str]:
    src = str(REPO / "src")
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, TOKENIZERS_PARALLELISM="false",
                PYTHONPATH=src + (os.pathsep + path if path else ""))


def _tree_rss(root: int) -> int:
    """Bytes of RSS of ``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(d))
            rss[int(d)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def run_side(side: str, params: dict[str, Any], log: Path | None = None) -> dict[str, Any]:
    """Run one side in a fresh process; returns its result plus wall time and peak RSS."""
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, str(HERE), "--child", side, json.dumps(params)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    peak = [0]
    stop = threading.Event()

    def monitor() -> None:
        last = time.monotonic()
        while not stop.wait(0.1):
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            if log is not None and time.monotonic() - last > 30:
                last = time.monotonic()
                done = len([d for d in Path(params["out"]).glob(".work-*/[0-9]*")])
                with log.open("a") as f:
                    f.write(json.dumps({"side": side, "elapsed_s": round(time.perf_counter() - t0),
                                        "files_tokenized": done,
                                        "peak_rss_mb": round(peak[0] / 2**20),
                                        "load": os.getloadavg()[0]}) + "\n")

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    out, err = proc.communicate()
    stop.set()
    thread.join()
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and its waited workers
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (err.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"error: prepare/{side} failed: {tail}")
    result = json.loads(lines[-1][len("RESULT "):])
    return {**result, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak[0] / 2**20}


def child_ours(p: dict[str, Any]) -> dict[str, Any]:
    from maskedlm.data.shards import ShardSet, prepare_shards

    path = prepare_shards([p["corpus"]], p["tokenizer"], p["out"], workers=p["workers"],
                          show_progress=False)
    meta = ShardSet.load(path).meta
    return {"tokens": meta["train_tokens"] + meta["valid_tokens"]}


def child_peer(p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import pyarrow.compute as pc
    from datasets import disable_progress_bars, load_dataset
    from tokenizers import Tokenizer

    disable_progress_bars()
    tok = Tokenizer.from_file(str(Path(p["tokenizer"]) / "tokenizer.json"))
    files = sorted(str(f) for f in Path(p["corpus"]).glob("*.parquet"))
    ds = load_dataset("parquet", data_files=files, split="train", cache_dir=p["out"] + "/hf")

    def encode(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        return {"ids": [e.ids for e in tok.encode_batch(batch["text"], add_special_tokens=False)]}

    out = ds.map(encode, batched=True, num_proc=p["workers"], remove_columns=ds.column_names)
    n = 0
    with open(Path(p["out"]) / "tokens.bin", "wb") as f:
        for chunk in out.data.column("ids").chunks:
            ids = pc.list_flatten(chunk).to_numpy().astype(np.uint16)
            ids.tofile(f)
            n += len(ids)
    return {"tokens": n}


def measure(data_root: Path, mb: float, workers: int, formats: list[str], peer: bool,
            keep: bool, log: Path | None = None, file_mb: float = FILE_MB
            ) -> list[dict[str, Any]]:
    """Generate the corpus, run ours (and the peer), return the JSON rows."""
    folder = CACHE / f"prepare-{mb:g}mb-{'-'.join(formats)}"
    work = CACHE / f"prepare-work-{os.getpid()}"
    load0 = os.getloadavg()
    try:
        t0 = time.perf_counter()
        info = make_corpus(data_root, folder, mb, formats, file_mb)
        info["generate_s"] = round(time.perf_counter() - t0, 1)
        tok = make_tokenizer(folder, CACHE / "prepare-tokenizer-16k")
        params = {"corpus": str(folder), "tokenizer": str(tok), "workers": workers}
        shutil.rmtree(work, ignore_errors=True)
        ours = run_side("ours", {**params, "out": str(work / "ours")}, log)
        shutil.rmtree(work / "ours", ignore_errors=True)
        row: dict[str, Any] = {"case": f"prepare_{mb:g}mb_{workers}workers",
                               "ours": round(ours["tokens"] / ours["wall_s"] / 1e6, 3),
                               "peer": None, "unit": "M tokens/s", "ratio": None,
                               "ours_per_core": round(ours["tokens"] / ours["wall_s"] / 1e6
                                                      / workers, 3),
                               "ours_per_cpu_s": round(ours["tokens"] / ours["cpu_s"] / 1e6, 3),
                               "ours_tokens": ours["tokens"], "ours_s": round(ours["wall_s"], 1),
                               "ours_cpu_s": round(ours["cpu_s"], 1),
                               "ours_peak_rss_mb": round(ours["peak_rss_mb"]),
                               "corpus": info, "formats": formats}
        if peer:
            theirs = run_side("peer", {**params, "out": str(work / "peer")}, log)
            row.update(peer=round(theirs["tokens"] / theirs["wall_s"] / 1e6, 3),
                       ratio=round(theirs["wall_s"] / ours["wall_s"], 3),
                       peer_per_cpu_s=round(theirs["tokens"] / theirs["cpu_s"] / 1e6, 3),
                       cpu_ratio=round(theirs["cpu_s"] / ours["cpu_s"], 3),
                       peer_tokens=theirs["tokens"], peer_s=round(theirs["wall_s"], 1),
                       peer_cpu_s=round(theirs["cpu_s"], 1),
                       peer_peak_rss_mb=round(theirs["peak_rss_mb"]))
        row["load_before_after"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
        return [row]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--mb", type=float, default=100.0, help="MB of text in the corpus")
    ap.add_argument("--workers", type=int, default=2, help="processes on each side")
    ap.add_argument("--formats", default="parquet", help="parquet and/or jsonl.zst, comma-separated")
    ap.add_argument("--no-peer", action="store_true", help="ours only (e.g. the 5 GB memory run)")
    ap.add_argument("--file-mb", type=float, default=FILE_MB, help="MB of text per file")
    ap.add_argument("--keep", action="store_true", help="keep the generated corpus")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--log", type=Path, help="append a progress line every 30 s to this file")
    a = ap.parse_args(argv)
    if a.child:
        side, spec = a.child
        result = (child_ours if side == "ours" else child_peer)(json.loads(spec))
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    for row in measure(a.data_root, a.mb, a.workers, formats, not a.no_peer, a.keep, a.log,
                       a.file_mb):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
