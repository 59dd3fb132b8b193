"""A model kind that exists only in the tests: reverse a string, character by character.

It proves the task seam is real: its model side (`export.py`, `contract.py`), training
side (`training_task.py`) and serving side (`serving_task.py`) are all here, trained by
the shared driver, exported through the same contract and served by the real server
(`--task-modules tests.reverse.serving_task`), and no line of the engine names it. It
answers Translate (beam search) and Generate / GenerateStream (sampling or beam
search, streamed), so it also exercises the sampler and per-step delivery end to end.
"""
