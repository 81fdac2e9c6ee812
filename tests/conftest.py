"""Test-wide settings: one intra-op thread (2-core CI machines), offline W&B, no network."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_CONSOLE", "off")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")

import torch

torch.set_num_threads(1)

# Property tests: CI (CI=true) runs a fixed, derandomized set of examples so that a green run is
# reproducible; locally hypothesis explores new examples on every run (and replays failures).
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))
