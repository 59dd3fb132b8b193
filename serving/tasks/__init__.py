"""The serving task table: one module per model kind, each defining `TASK`.

A new model kind adds its module here. Tasks outside recur (or only in tests) are
loaded with `python -m serving --task-modules MODULE[,MODULE...]`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from serving.task import Task
from serving.tasks import caption, charlm, tag, translate

BUILT_IN: tuple[Task, ...] = (translate.TASK, tag.TASK, charlm.TASK, caption.TASK)


def load_tasks(extra_modules: Sequence[str] = ()) -> dict[str, Task]:
    """Task name -> Task: the built-in ones, then each module's `TASK` (which may
    replace a built-in one of the same name). Raises ValueError saying what is wrong."""
    tasks = {task.name: task for task in BUILT_IN}
    for name in extra_modules:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise ValueError(f"--task-modules: cannot import {name!r}: {error}") from None
        task = getattr(module, "TASK", None)
        if not isinstance(task, Task):
            raise ValueError(f"--task-modules: {name} has no TASK (an instance of "
                             "serving.task.Task)")
        tasks[task.name] = task
    return tasks
