"""NWS trainer: fine-tuning with sampling strategies (``nws-train``), data, models, embeddings.

Kept import-light (loader workers import it): use ``nws_trainer.train.run`` and
``nws_trainer.config.TrainConfig`` directly.
"""
