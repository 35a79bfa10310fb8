"""Exports of a model folder for other runtimes.

* :mod:`transformer_xl.export.onnx`: the segment step as an ONNX graph with a fixed-size memory
  (``txl export MODEL --format onnx --out DIR``), written with PyTorch's exporter;
* :mod:`transformer_xl.export.onnx_runtime`: the streaming loop over such a folder (scoring and
  greedy generation) on onnxruntime and NumPy alone, without PyTorch.

Nothing is imported here, so that the runtime module loads without torch.
"""
