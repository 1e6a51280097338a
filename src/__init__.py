"""Faster R-CNN-DCN for MindSpore.

Importing the package sets OMP_WAIT_POLICY=PASSIVE unless the environment sets it: an idle OpenMP thread then
sleeps instead of spinning (libgomp's default spins ~300000 rounds after each parallel region). The C++ kernels
(src/ops/cpu) run on libgomp's threads and MindSpore's operators on MindSpore's own pool, on the same cores, so a
spinning libgomp thread takes a core from the next MindSpore operator. libgomp reads the variable once, when
MindSpore loads it: every entry point imports `src` before `mindspore`.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
