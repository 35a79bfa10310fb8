"""Converters between this project's checkpoints and foreign formats (declarative key maps).

``api``           whole conversions: ``convert_checkpoint("tf"|"original"|"hf", SRC, OUT)``,
                  ``export_hf(SRC, OUT)`` (``txl convert`` calls these)
``keymap``        ``Rule`` / ``apply_rules``: every source tensor used or skipped, every target
                  filled with the right shape; ``assemble`` builds the model from them
``tf``            the authors' TensorFlow variables -> ours (config read from the shapes)
``tf_bundle``     TensorFlow checkpoint files read without TensorFlow (``crc32c`` checks them)
``torch_layout``  the authors' PyTorch module layout, shared by HF's port
``original``      the authors' pickled ``MemTransformerLM`` / state dicts -> ours
``hf``            HF ``TransfoXL`` folders <-> ours
``safe_pickle``   pickles loaded through an allow-list (no code from the file runs)
``vocab_files``   their vocabulary pickles -> ``vocab.json``
``remap``         a prepared dataset re-encoded into a converted model's token ids
"""
