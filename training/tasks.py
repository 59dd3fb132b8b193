"""The training task table: `python -m training.run TASK` dispatches through it.

A new model kind adds its module's `TASK` here.
"""

from __future__ import annotations

from training import caption, charlm, tag, translate
from training.driver import TrainingTask

TASKS: dict[str, TrainingTask] = {task.name: task for task in (translate.TASK, tag.TASK,
                                                              charlm.TASK, caption.TASK)}
