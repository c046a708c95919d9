"""Frames and text to vectors with OpenCLIP.

- :mod:`.weights` - find and load weights (a hub tag, a file, a ``local-dir:`` folder) and say
  what they are (:class:`~.weights.Provenance`); :mod:`.model_files` writes random weights for
  tests and model folders; :mod:`.offline` falls back to the committed offline model.
- :mod:`.precision` - the device and number format (bf16 where the CPU has it natively).
- :mod:`.patches` - which windows of a frame become patch vectors (a pure function).
- :mod:`.crops` - the pixels of the global view and of each planned window.
- :mod:`.encoder` - :class:`~.encoder.FrameEncoder`: batched global, patch and text vectors.

Architectures framesearch defines itself live in ``model_configs/`` as open_clip JSON configs.
"""
