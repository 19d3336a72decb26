"""The testbed's training recipes (the shipped checkpoints were trained by them): :mod:`.policy` (the policy,
stopped early inside its accuracy band), :mod:`.reward` (the distilled reward model and its teacher), and
:mod:`.script_args` (one command-line flag per settings field, for the ``experiments/testbed/train_*.py`` scripts)."""
