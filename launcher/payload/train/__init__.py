"""The training payload: a causal LM built from a transformers config, trained on local text.

Run under a launcher (``python -m launcher.payload.train --engine … --config …``); every rank runs it.
This package imports torch: keep it off the CLI's import path.
"""
