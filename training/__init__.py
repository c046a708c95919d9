"""The synthetic shapes world and the offline model trained on it.

- :mod:`.world` - seeded frames of coloured shapes on textured backgrounds with exact ground
  truth: the sample library, the quality benchmark and the training data draw from it.
- :mod:`.examples` - training images made like what the encoder sees (patch crops, letterboxed
  frames, empty backgrounds).
- :mod:`.train_world_model` - trains ``models/framesearch-world`` (``python -m training.train_world_model``).
"""
