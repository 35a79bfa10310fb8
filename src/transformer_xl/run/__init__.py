"""The framework-neutral run layer shared by the PyTorch and TensorFlow trainers and evaluators
(no torch, no tensorflow imports; ``tests/test_train_inputs.py`` checks it):

- :mod:`~transformer_xl.run.config`: ``TrainConfig`` / ``RunConfig``, the layering (recipe <
  file < ``--set``) with its typed value grammar, resume rules, ``--print-config``;
- :mod:`~transformer_xl.run.schedule`: learning-rate schedules and ``dev_perf``;
- :mod:`~transformer_xl.run.metrics`: scores, ``metrics.jsonl`` (non-finite as null);
- :mod:`~transformer_xl.run.folder`: ``RunFolder``, the owner of the run folder's layout;
- :mod:`~transformer_xl.run.evaluation`: what ``txl eval`` scores with, and its JSON record;
"""
