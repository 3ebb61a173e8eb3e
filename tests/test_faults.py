"""Nothing the user has is ever destroyed (issue #30): outputs that never replace other
folders, one-line faults on full or read-only disks, signals at any phase, resume that
refuses what does not match, no NaN in a checkpoint.

Each test injects the fault (an ``OSError`` from the disk, a signal, a NaN) or builds
the hostile layout, runs the command in-process through :func:`maskedlm.cli.main`
(in a subprocess where the fault is a signal), and checks the one line, the exit code
and that every file that was there before is still there, unchanged.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import maskedlm
from maskedlm.cli import main
from maskedlm.files import LOCK_NAME, MARKER_NAME, recover_interrupted_swap

SRC = str(Path(maskedlm.__file__).resolve().parents[1])  # subprocesses run the code under test


def cli(capsys, *argv) -> tuple[int, list[str]]:
    """(exit code, stderr lines) of ``maskedlm ARGV``, stdout dropped."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


def one_error(code: int, lines: list[str], *pieces: str) -> str:
    errors = [ln for ln in lines if ln.startswith("maskedlm: error:")]
    assert code == 2 and len(errors) == 1, lines
    assert all(p in errors[0] for p in pieces), errors[0]
    return errors[0]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (symlinks as their target) with its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = b"-> " + os.readlink(p).encode()
        elif p.is_file() and p.name != LOCK_NAME:
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def pretrain_args(shards, out, *extra) -> list[str]:
    return ["pretrain", "--data", str(shards), "--out", str(out), "--seq-len", "32",
            "--batch-size", "4", "--no-progress", "--eval-sequences", "4", "--log-every", "1",
            *map(str, extra)]


@pytest.fixture(scope="module")
def pristine_run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "run"
    assert main(pretrain_args(tiny_data["shards"], out, "--max-steps", 2, "--recipe", "roberta")) == 0
    return out


@pytest.fixture
def run(pristine_run, tmp_path_factory) -> Path:
    """A finished 2-step pretraining run (post-LN: export-hf takes it), a copy per test:
    a test that destroyed it cannot make the others fail."""
    out = tmp_path_factory.mktemp("src") / "run"
    shutil.copytree(pristine_run, out, symlinks=True)
    return out


def user_folder(path: Path) -> Path:
    """A folder of the user's own files (nothing maskedlm wrote)."""
    (path / "notes").mkdir(parents=True)
    (path / "thesis.tex").write_text("my thesis\n")
    (path / "notes" / "n.txt").write_text("notes\n")
    return path


# ----------------------------------------------------------------------------- 30.1 never replace
def test_export_refuses_a_folder_of_the_users_files_and_overwrite_allows_it(run, tmp_path, capsys):
    dst = user_folder(tmp_path / "mine")
    before = tree(dst)
    code, lines = cli(capsys, "export-hf", run, dst)
    one_error(code, lines, str(dst), "not written by maskedlm", "--overwrite")
    assert tree(dst) == before
    assert cli(capsys, "export-hf", run, dst, "--overwrite")[0] == 0
    assert (dst / "config.json").is_file() and (dst / MARKER_NAME).is_file()
    # an earlier export of the same kind is replaced without asking
    assert cli(capsys, "export-hf", run, dst)[0] == 0


def test_a_run_is_never_an_export_target_nor_a_finetune_out(run, tiny_data, tmp_path, capsys):
    before = tree(run)
    one_error(*cli(capsys, "export-hf", run, run), "is the input")
    one_error(*cli(capsys, "export-st", run, run, "--overwrite"), "is the input")
    other = tmp_path / "other"
    assert main(pretrain_args(tiny_data["shards"], other, "--max-steps", 1)) == 0
    one_error(*cli(capsys, "export-hf", run, other, "--overwrite"), "is a pretrain run")
    train = tmp_path / "cls.tsv"
    train.write_text("text\tlabel\n" + "".join(f"the {w} sat\t{i % 2}\n" for i, w in enumerate("ab" * 4)))
    one_error(*cli(capsys, "finetune", "classify", "--model", run, "--train", train, "--out", run),
              "is the input")
    one_error(*cli(capsys, "finetune", "classify", "--model", run, "--train", train, "--out", other,
                   "--overwrite"), "is a pretrain run")
    assert tree(run) == before


def test_an_existing_file_the_current_directory_and_a_symlink_are_refused(run, tmp_path, capsys,
                                                                            monkeypatch):
    f = tmp_path / "model.bin"
    f.write_bytes(b"precious")
    one_error(*cli(capsys, "export-hf", run, f, "--overwrite"), "is not a directory")
    assert f.read_bytes() == b"precious"
    here = user_folder(tmp_path / "cwd")
    monkeypatch.chdir(here)
    before = tree(here)
    one_error(*cli(capsys, "export-hf", run, ".", "--overwrite"), "current directory")
    assert tree(here) == before
    link = tmp_path / "link"
    link.symlink_to(here)
    one_error(*cli(capsys, "export-onnx", run, link, "--overwrite"), "symbolic link")
    assert tree(here) == before


def test_wsd_train_and_scorecard_refuse_a_folder_of_the_users_files(run, tmp_path, capsys):
    dst = user_folder(tmp_path / "mine")
    (dst / "runs").mkdir()
    (dst / "runs" / "keep.txt").write_text("a run of mine\n")
    before = tree(dst)
    one_error(*cli(capsys, "wsd", "train", run, "--semcor", "x.jsonl.gz", "--wordnet", "dict",
                   "--out", dst), "not written by maskedlm")
    one_error(*cli(capsys, "scorecard", run, "--tasks", "sst2", "--out", dst), "not written by maskedlm")
    assert tree(dst) == before


def test_a_rerun_that_fails_keeps_the_earlier_run(run, tiny_data, tmp_path, capsys, monkeypatch):
    """Without --resume, a new run into a run directory replaces the old one only once it
    has its own checkpoint: one that fails before leaves the earlier run as it was."""
    import maskedlm.training.loop as train_mod

    old = tmp_path / "run"
    shutil.copytree(run, old)
    before = tree(old)
    real = train_mod.forward_backward

    def fails_at_step_2(ddp, model, micro, cfg, di, window):
        if window["steps"] >= 1 or any(not torch.isfinite(p).all() for p in model.parameters()):
            raise RuntimeError("simulated crash in the new run")
        real(ddp, model, micro, cfg, di, window)

    monkeypatch.setattr(train_mod, "forward_backward", fails_at_step_2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(pretrain_args(tiny_data["shards"], old, "--max-steps", 5, "--log-every", 5))
    assert tree(old) == before
    monkeypatch.undo()
    capsys.readouterr()
    # a rerun that gets its checkpoint does replace it
    assert main(pretrain_args(tiny_data["shards"], old, "--max-steps", 3, "--recipe", "roberta")) == 0
    assert json.loads((old / "run.json").read_text())["options"]["train"]["max_steps"] == 3
    assert not (old / ".replaced-run").exists()


def test_resume_never_writes_through_a_symlink(run, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    outside = tmp_path / "outside.json"
    outside.write_text("the user's file\n")
    (out / "run.json").unlink()
    (out / "run.json").symlink_to(outside)
    assert main(pretrain_args(tiny_data["shards"], out, "--max-steps", 3, "--recipe", "roberta",
                              "--resume")) == 0
    assert outside.read_text() == "the user's file\n"
    assert not (out / "run.json").is_symlink()  # replaced by a file of its own
    (out / "metrics.jsonl").rename(tmp_path / "m.jsonl")
    (out / "metrics.jsonl").symlink_to(tmp_path / "m.jsonl")
    kept = (tmp_path / "m.jsonl").read_bytes()
    code, lines = cli(capsys, *pretrain_args(tiny_data["shards"], out, "--max-steps", 4,
                                             "--recipe", "roberta", "--resume"))
    one_error(code, lines, "metrics.jsonl", "symbolic link")
    assert (tmp_path / "m.jsonl").read_bytes() == kept


def test_stale_temp_folders_of_dead_writers_are_removed_and_live_ones_kept(run, tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dst = tmp_path / "hf"
        assert cli(capsys, "export-hf", run, dst)[0] == 0
        stale = tmp_path / f".hf.tmp-{dead_pid}"
        busy = tmp_path / f".hf.tmp-{live.pid}"
        for d in (stale, busy):
            d.mkdir()
            (d / "model.safetensors").write_bytes(b"half")
        assert cli(capsys, "export-hf", run, dst)[0] == 0
        assert not stale.exists() and busy.exists()
    finally:
        live.kill()
        live.wait()


def test_a_reader_never_undoes_a_live_writers_swap(tmp_path):
    """The two-rename swap (file systems without RENAME_EXCHANGE) leaves ``checkpoint``
    missing for a moment: a reader then waits for the writer instead of putting the old
    copy back under its feet (which made the trainer die with "Directory not empty")."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = tmp_path / f".checkpoint.old-{live.pid}"
        old.mkdir()
        (old / "config.json").write_text("{}")
        t0 = time.monotonic()
        assert recover_interrupted_swap(tmp_path / "checkpoint", wait=0.3) is False
        assert time.monotonic() - t0 >= 0.3 and old.exists()
        assert not (tmp_path / "checkpoint").exists()
    finally:
        live.kill()
        live.wait()
    assert recover_interrupted_swap(tmp_path / "checkpoint", wait=0.3) is True  # now dead
    assert (tmp_path / "checkpoint" / "config.json").is_file()


@pytest.mark.slow  # about a minute on a loaded 2-core machine (two processes load torch)
def test_readers_and_a_saving_trainer_never_collide(run, tmp_path):
    """A process saving the checkpoint over and over while this one loads it: every load
    succeeds and the writer never fails."""
    from maskedlm.checkpoint import load_model

    ckpt = tmp_path / "run" / "checkpoint"
    shutil.copytree(run / "checkpoint", ckpt)
    code = ("import sys; from maskedlm.checkpoint import load_model, save_checkpoint\n"
            "from maskedlm.data.tokenizer import Tokenizer\n"
            "m, c = load_model(sys.argv[1]); t = Tokenizer.load(c)\n"
            "print('ready', flush=True)\n"
            "for _ in range(15): save_checkpoint(sys.argv[1], m, t, purpose=None)\n")
    env = {**os.environ, "PYTHONPATH": SRC}
    writer = subprocess.Popen([sys.executable, "-c", code, str(ckpt)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    assert writer.stdout.readline().strip() == "ready"
    loads = 0
    while writer.poll() is None:
        load_model(tmp_path / "run")
        loads += 1
    assert writer.returncode == 0, writer.stderr.read()
    assert loads >= 1 and not list(ckpt.parent.glob(".checkpoint.*"))


# ----------------------------------------------------------------------------- 30.2 faults
def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_at_a_later_checkpoint_one_line_previous_checkpoint_kept(run, tiny_data, tmp_path,
                                                                            capsys, monkeypatch):
    import maskedlm.checkpoint as ckpt_mod

    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = tree(out / "checkpoint")
    monkeypatch.setattr(ckpt_mod, "save_file", enospc)
    code, lines = cli(capsys, *pretrain_args(tiny_data["shards"], out, "--max-steps", 4,
                                             "--recipe", "roberta", "--resume"))
    one_error(code, lines, "checkpoint", "no space left", "previous copy there is kept")
    assert tree(out / "checkpoint") == before
    assert not [p for p in out.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_full_disk_at_the_first_checkpoint_says_nothing_was_written(tiny_data, tmp_path, capsys,
                                                                    monkeypatch):
    import maskedlm.checkpoint as ckpt_mod

    monkeypatch.setattr(ckpt_mod, "save_file", enospc)
    out = tmp_path / "run"
    one_error(*cli(capsys, *pretrain_args(tiny_data["shards"], out, "--max-steps", 2)),
              "no space left", "nothing was written")
    assert not (out / "checkpoint").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


@contextmanager
def small_disk(path: Path, size: str):
    """A real size-limited file system at ``path`` (tmpfs; needs root), else a skip."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a size-limited tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.parametrize("size, steps, kept", [("1m", 1, "nothing was written"),
                                               ("9m", 2, "previous copy there is kept")])
def test_a_really_full_disk_during_pretraining_is_one_line(tiny_data, tmp_path, capsys, size, steps,
                                                           kept):
    """On a 1 MB disk the first checkpoint (~6 MB with the optimizer state) does not fit;
    on a 9 MB one the first does and the second (written beside it) does not."""
    from maskedlm.checkpoint import load_model

    with small_disk(tmp_path / "disk", size) as disk:
        out = disk / "run"
        code, lines = cli(capsys, *pretrain_args(tiny_data["shards"], out, "--max-steps", steps,
                                                 "--save-every", 1, "--recipe", "roberta"))
        one_error(code, lines, "no space left", kept)
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
        if steps == 2:
            load_model(out)  # the previous checkpoint is whole
        else:
            assert not (out / "checkpoint").exists()


@pytest.mark.parametrize("command", ["export-hf", "finetune", "embed", "tokenizer"])
def test_a_really_full_disk_in_other_commands_is_one_line(run, tiny_data, tmp_path, capsys, command):
    """Each command writing to a 64 KB disk (4 KB for the tokenizer's few files): one line,
    exit 2, no temporary file left."""
    train = tmp_path / "a.tsv"
    train.write_text("text\tlabel\n" + "".join(f"the {w} sat\t{i % 2}\n" for i, w in enumerate("ab" * 4)))
    with small_disk(tmp_path / "disk", "4k" if command == "tokenizer" else "64k") as disk:
        out = disk / "out"
        argv = {"export-hf": ["export-hf", run, out],
                "finetune": ["finetune", "classify", "--model", run, "--train", train, "--out", out,
                             "--epochs", "1", "--no-progress"],
                "embed": ["embed", run, "--input", tiny_data["corpus"], "--out", out / "v.npy"],
                "tokenizer": ["tokenizer", "train", "--corpus", tiny_data["corpus"], "--vocab-size",
                              "120", "--out", out]}[command]
        one_error(*cli(capsys, *argv), "no space left")
        assert not [p for p in disk.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_disk_faults_in_exports_are_one_line_and_leave_no_temp(run, tmp_path, capsys, monkeypatch,
                                                               err):
    import maskedlm.files as files

    real = files.write_marker

    def fails(directory, purpose):
        raise OSError(err, os.strerror(err))

    dst = tmp_path / "hf"
    assert cli(capsys, "export-hf", run, dst)[0] == 0
    before = tree(dst)
    monkeypatch.setattr(files, "write_marker", fails)
    one_error(*cli(capsys, "export-hf", run, dst), str(dst), files.WRITE_FAULTS[err])
    assert tree(dst) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    monkeypatch.setattr(files, "write_marker", real)


def test_read_only_out_for_pretrain_is_one_line(tiny_data, tmp_path, capsys, monkeypatch):
    import maskedlm.files as files

    real_open = files.os.open

    def read_only(path, flags, mode=0o777, **kw):
        if str(path).startswith(str(tmp_path)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(files.os, "open", read_only)
    one_error(*cli(capsys, *pretrain_args(tiny_data["shards"], tmp_path / "run", "--max-steps", 1)),
              "read-only file system")


def test_a_disk_fault_in_any_command_is_one_line(tiny_data, tmp_path, capsys, monkeypatch):
    """The last guard: an OSError from the disk anywhere (here the tokenizer writer) is
    one line and exit 2, not a traceback."""
    from maskedlm.data.tokenizer import Tokenizer

    monkeypatch.setattr(Tokenizer, "save", enospc)
    one_error(*cli(capsys, "tokenizer", "train", "--corpus", tiny_data["corpus"], "--vocab-size",
                   "120", "--out", tmp_path / "tok"), "no space left")


SIGNAL_SCRIPT = """
import os, signal, sys
import maskedlm.training.loop as t, maskedlm.pretrain as p
from maskedlm.cli import main
phase = sys.argv[1]
if phase == "first-eval":
    real = t.evaluate
    def evaluate(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)
    t.evaluate = evaluate
elif phase == "data":
    real = p.resolve_data
    def resolve_data(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)
    p.resolve_data = resolve_data
else:  # fine-tuning, while the training file is read
    import importlib
    ft = importlib.import_module("maskedlm.tasks.finetune")
    real = ft.read_examples
    def read(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)
    ft.read_examples = read
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("phase, why", [("first-eval", "starting-point evaluation"),
                                        ("data", "before the first training step"),
                                        ("finetune", "before the first training step")])
def test_sigterm_at_any_phase_exits_75_and_says_why_no_checkpoint(run, tiny_data, tmp_path, phase,
                                                                  why):
    out = tmp_path / "run"
    args = pretrain_args(tiny_data["shards"], out, "--max-steps", 3, "--eval-every", 1)
    if phase == "finetune":
        train = tmp_path / "a.tsv"
        train.write_text("text\tlabel\na cat\t0\na dog\t1\n")
        args = ["finetune", "classify", "--model", str(run), "--train", str(train), "--out",
                str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-c", SIGNAL_SCRIPT, phase, *args], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 75, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "stopped by SIGTERM" in last and "no checkpoint was written" in last and why in last
    assert not (out / "checkpoint").exists() and not (out / "model.safetensors").exists()


# ----------------------------------------------------------------------------- 30.3 resume
@pytest.mark.parametrize("extra, message", [
    (["--recipe", "spanbert"], "--recipe spanbert, but the run was started with --recipe roberta"),
    (["--recipe", "roberta", "--arch", "modernbert"], "--arch modernbert"),
    (["--recipe", "roberta", "--max-steps", "1"], "--max-steps 1 is below the step the run already reached (2)"),
])
def test_resume_refuses_what_does_not_match(run, tiny_data, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = tree(out)
    args = pretrain_args(tiny_data["shards"], out, "--max-steps", 4, "--resume")
    one_error(*cli(capsys, *args, *extra), message)
    assert tree(out) == before


def test_resume_refuses_shards_of_another_tokenizer(run, tiny_data, tmp_path, capsys):
    from conftest import write_corpus

    from maskedlm.data.shards import prepare_shards
    from maskedlm.data.tokenizer import train_tokenizer

    corpus = write_corpus(tmp_path / "c.txt", seed=1)
    tok = train_tokenizer([corpus.read_text()], vocab_size=130, show_progress=False)
    tok.save(tmp_path / "tok2")
    shards = prepare_shards([str(corpus)], tmp_path / "tok2", tmp_path / "shards2",
                            show_progress=False, valid_fraction=0.1)
    out = tmp_path / "run"
    shutil.copytree(run, out)
    one_error(*cli(capsys, *pretrain_args(shards, out, "--max-steps", 4, "--recipe", "roberta",
                                          "--resume")), "another tokenizer")


def test_resume_repairs_a_torn_last_metrics_line(run, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 1.2')  # a writer killed mid-line
    assert main(pretrain_args(tiny_data["shards"], out, "--max-steps", 3, "--recipe", "roberta",
                              "--resume")) == 0
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]


def test_finetune_resume_refuses_a_file_with_more_labels(run, tmp_path, capsys, monkeypatch):
    from maskedlm.tasks.finetune import TRAINING_STATE_NAME

    train = tmp_path / "a.tsv"
    train.write_text("text\tlabel\n" + "".join(f"the {w} sat\t{i % 2}\n" for i, w in enumerate("ab" * 8)))
    out = tmp_path / "ft"
    from maskedlm.training.signals import StopSignals

    real = StopSignals.__enter__

    def signalled(self):  # a SIGTERM as soon as the loop starts
        r = real(self)
        self.received = "SIGTERM"
        return r

    monkeypatch.setattr(StopSignals, "__enter__", signalled)
    code, _ = cli(capsys, "finetune", "classify", "--model", run, "--train", train, "--out", out,
                  "--batch-size", "4", "--no-progress")
    assert code == 75 and (out / TRAINING_STATE_NAME).is_file()
    monkeypatch.undo()
    more = tmp_path / "b.tsv"
    more.write_text(train.read_text() + "the c sat\t2\n")
    one_error(*cli(capsys, "finetune", "classify", "--model", run, "--train", more, "--out", out,
                   "--batch-size", "4", "--no-progress", "--resume"), "3 labels", "2")


# ----------------------------------------------------------------------------- 30.4 NaN
def test_nan_weights_never_reach_a_pretraining_checkpoint(run, tiny_data, tmp_path, capsys,
                                                          monkeypatch):
    """Weights that turn NaN in the very step that is saved (the loss logged for it was
    still finite): the save is refused and the last finite checkpoint stays."""
    import maskedlm.training.loop as train_mod
    from maskedlm.checkpoint import load_model

    out = tmp_path / "run"
    shutil.copytree(run, out)
    real = train_mod.optimizer_step

    def poisons(model, optimizer, scheduler, clip_grad, step):
        real(model, optimizer, scheduler, clip_grad, step)
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))

    monkeypatch.setattr(train_mod, "optimizer_step", poisons)
    code, lines = cli(capsys, *pretrain_args(tiny_data["shards"], out, "--max-steps", 3,
                                             "--recipe", "roberta", "--resume"))
    one_error(code, lines, "NaN", "last finite checkpoint is kept")
    model, _ = load_model(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_nan_finetuning_loss_is_one_line_and_the_last_good_checkpoint_kept(run, tmp_path, capsys,
                                                                             monkeypatch):
    from maskedlm.tasks.classify import ClassifyTask
    from maskedlm.tasks.finetune import load_task

    train = tmp_path / "a.tsv"
    train.write_text("text\tlabel\n" + "".join(f"the {w} sat\t{i % 2}\n" for i, w in enumerate("ab" * 8)))
    out = tmp_path / "ft"
    real, calls = ClassifyTask.loss, []

    def nan_from_step_3(self, model, batch):
        calls.append(1)
        loss = real(self, model, batch)
        return loss * float("nan") if len(calls) >= 3 else loss

    monkeypatch.setattr(ClassifyTask, "loss", nan_from_step_3)
    code, lines = cli(capsys, "finetune", "classify", "--model", run, "--train", train, "--out", out,
                      "--batch-size", "4", "--eval-every", "2", "--epochs", "2", "--no-progress")
    one_error(code, lines, "step 3", "NaN", "last good checkpoint")
    m = load_task(out)
    assert all(torch.isfinite(p).all() for p in m.model.parameters())
    assert json.loads((out / "task.json").read_text())["metrics"]["step"] == 2


# ----------------------------------------------------------------------------- 30.5 hostile
def test_clip_grad_zero_means_no_clipping(tiny_data, tmp_path):
    """``--clip-grad 0`` is documented as "none": the weights must move (clipping to a
    norm of 0 zeroed every gradient and froze them)."""
    from test_train import opts

    from maskedlm.checkpoint import load_model
    from maskedlm.pretrain import pretrain

    torch.manual_seed(0)
    pretrain(opts(tiny_data["shards"], tmp_path / "a", max_steps=1, clip_grad=0.0, weight_decay=0.0,
                  save_every=0))
    start, _ = load_model(tmp_path / "a")
    pretrain(opts(tiny_data["shards"], tmp_path / "a", max_steps=3, clip_grad=0.0, weight_decay=0.0,
                  resume=True))
    end, _ = load_model(tmp_path / "a")
    moved = [k for k, v in start.state_dict().items() if not torch.equal(v, end.state_dict()[k])]
    assert len(moved) > len(start.state_dict()) // 2


def test_a_long_prompt_is_cut_in_the_error_line(run, capsys):
    code, lines = cli(capsys, "fill-mask", run, "x" * 100_000)
    line = one_error(code, lines, "no [MASK] token", "100000 characters")
    assert len(line) < 300


def test_a_non_utf8_locale_works(run, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONUTF8", "PYTHONIO"))}
    env.update(LANG="C", LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0",
               PYTHONPATH=SRC)
    r = subprocess.run([sys.executable, "-m", "maskedlm.cli", "fill-mask", str(run), "Café [MASK] naïve ünïcödé"],
                       capture_output=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert "[MASK] #1" in r.stdout.decode("utf-8", errors="replace")
