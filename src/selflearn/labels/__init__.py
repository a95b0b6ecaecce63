"""Ground-truth generation: a contextual label model trained from feedback, not annotation."""

from .dialogues import Dialogue, Exchange, read_dialogues, write_dialogues
from .evaluate import evaluate_predictions, labels_as_predictions, reference_targets
from .model import TASKS, LabelModel
from .weak import store_dialogues

__all__ = ["Dialogue", "Exchange", "read_dialogues", "write_dialogues", "LabelModel", "TASKS", "store_dialogues",
           "evaluate_predictions", "labels_as_predictions", "reference_targets"]
