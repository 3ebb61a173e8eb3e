"""The allocator tuning: large tensors freed and allocated again reuse the heap instead of
being mapped afresh (page faults), and the opt-out leaves glibc's defaults alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from maskedlm import runtime

glibc = pytest.mark.skipif(runtime.glibc() is None, reason="mallopt tuning is glibc-only (Linux)")

# 20 rounds of three 48 MB activations written, then freed, as a training step does
CHILD = """
import json, resource
import torch
from maskedlm.runtime import tune_allocator
tuned = tune_allocator()

def step():
    xs = [torch.empty(12_000_000) for _ in range(3)]
    for x in xs:
        x.fill_(1.0)

step()  # the first round maps its pages in any case
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def _child(stock: bool) -> dict:
    env = {**os.environ, "MASKEDLM_STOCK_MALLOC": "1" if stock else "0", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_tuned_allocator_reuses_large_blocks():
    stock, tuned = _child(stock=True), _child(stock=False)
    assert stock["tuned"] is False and tuned["tuned"] is True
    pages = 20 * 3 * 48_000_000 // os.sysconf("SC_PAGE_SIZE")
    assert stock["faults"] > pages // 2  # glibc maps every round's 144 MB afresh
    assert tuned["faults"] < stock["faults"] // 5  # the heap's blocks are reused (measured: 1/10)


@glibc
def test_tune_allocator_acts_once_per_process():
    # The first call decides for the process: a later call, even with the opt-out set by
    # then, neither undoes nor repeats it.
    code = ("import os; from maskedlm.runtime import tune_allocator as t; first = t(); "
            "os.environ['MASKEDLM_STOCK_MALLOC'] = '1'; print(first, t())")
    env = {**os.environ, "MASKEDLM_STOCK_MALLOC": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["True", "True"]


def test_opt_out_leaves_the_allocator_alone():
    code = "from maskedlm.runtime import tune_allocator as t; print(t())"
    env = {**os.environ, "MASKEDLM_STOCK_MALLOC": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["False"]
