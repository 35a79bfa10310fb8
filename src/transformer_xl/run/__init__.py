"""The framework-neutral run layer shared by the PyTorch and TensorFlow trainers and evaluators
(no torch, no tensorflow imports; ``tests/test_train_inputs.py`` checks it):

- :mod:`~transformer_xl.run.config`: ``TrainConfig`` / ``RunConfig``, the layering (recipe <
  file < ``--set``) with its typed value grammar, resume rules, ``--print-config``;
- :mod:`~transformer_xl.run.schedule`: learning-rate schedules and ``dev_perf``;
- :mod:`~transformer_xl.run.metrics`: scores, ``metrics.jsonl`` (non-finite as null);
- :mod:`~transformer_xl.run.folder`: ``RunFolder``, the owner of the run folder's layout;
- :mod:`~transformer_xl.run.policy`: when a loop stops, validates and checkpoints, and what
  ``trainer.json`` holds (both trainers only execute its decisions);
- :mod:`~transformer_xl.run.resolve`: which model folder a path names (model, run or checkpoint
  folder, Hub repo id): the one resolver;
- :mod:`~transformer_xl.run.evaluation`: what ``txl eval`` scores with, and its JSON record;
"""
