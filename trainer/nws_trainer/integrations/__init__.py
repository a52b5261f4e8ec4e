"""NWS sampling inside training loops users already have, through public hooks only.

- :mod:`nws_trainer.integrations.torch`: :class:`NWSSampler` for a plain PyTorch loop (three
  changed lines), map-style and iterable datasets, ``torchrun`` / DDP.
- :mod:`nws_trainer.integrations.hf`: :class:`NWSTrainer`, a Hugging Face ``Trainer`` subclass.
- :mod:`nws_trainer.integrations.checkpoint`: save and resume model, optimizer, RNG and sampler
  state with the sketch's state in one checkpoint.
"""

from nws_trainer.integrations.checkpoint import load_checkpoint, save_checkpoint
from nws_trainer.integrations.torch import BatchInfo, NWSSampler, per_example_loss

__all__ = ["BatchInfo", "NWSSampler", "load_checkpoint", "per_example_loss", "save_checkpoint"]
