"""What both training loops share: the optimizer and its schedule, precision, metrics
logging, the distributed helpers, stop signals and the NaN guard.

* :mod:`~maskedlm.training.config`: :class:`TrainConfig` (no torch: the CLI reads it);
* :mod:`~maskedlm.training.optim`: AdamW, the learning-rate schedules, the gradient guard;
* :mod:`~maskedlm.training.precision`: bf16 autocast where the chip has it;
* :mod:`~maskedlm.training.metrics`: metrics.jsonl and TensorBoard;
* :mod:`~maskedlm.training.dist`: ``torchrun`` processes and their reductions;
* :mod:`~maskedlm.training.signals`: stopping cleanly on SIGTERM, SIGINT, SIGUSR1;
* :mod:`~maskedlm.training.loop`: the pretraining loop (fine-tuning's is
  :func:`maskedlm.tasks.finetune.finetune`, built from the same parts).
"""
