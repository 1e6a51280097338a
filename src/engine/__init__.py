"""Training engine: the trainer train.py runs (trainer.py) and every callback of a run (hooks.py)."""
