"""The testbed: a synthetic multi-step arithmetic task with exact answers, and a small policy / reward model pair
trained on it (shipped under ``models/``), so the method can be seen working on two CPU cores in minutes. The
package holds what decoding and evaluation need (the task, its grader, the shipped models); the training recipes,
the token encoding they use and the measurements live in ``experiments/testbed/``."""

import os

MODELS_DIR = os.path.join(os.path.dirname(__file__), "models")
POLICY_DIR = os.path.join(MODELS_DIR, "policy")
REWARD_DIR = os.path.join(MODELS_DIR, "reward")
TEST_JSONL = os.path.join(os.path.dirname(__file__), "data", "test.jsonl")
VERIFIER_DIR = os.path.join(MODELS_DIR, "verifier")  # the likelihood verifier: a stronger LM (--reward likelihood:...)
# the process reward model: --reward PRM_DIR --reward-separator none --reward-step-split "\n"
PRM_DIR = os.path.join(MODELS_DIR, "prm")
