"""Fine-tuning recipes: sentence (pair) classification, tagging, span-based NER.

>>> from maskedlm.tasks import load_task
>>> m = load_task("runs/ner")  # doctest: +SKIP
>>> m.predict("Jane Villanueva of United Airlines Holding discussed the merger.")  # doctest: +SKIP
"""

from maskedlm.tasks.finetune import FinetuneConfig, TaskPredictor, finetune, load_task, make_task

__all__ = ["FinetuneConfig", "TaskPredictor", "finetune", "load_task", "make_task"]
