"""Every Prefect task has its own name: the UI, the logs and the step lines show names,
and two tasks called the same (there were two 'rollback-champion') read as one."""

from __future__ import annotations

import importlib
import pkgutil

from prefect import Task

import tasks


def test_task_names_are_unique():
    seen: dict[str, str] = {}
    for info in pkgutil.iter_modules(tasks.__path__):
        module = importlib.import_module(f"tasks.{info.name}")
        for attr, value in vars(module).items():
            if isinstance(value, Task) and value.fn.__module__ == module.__name__:
                where = f"{module.__name__}.{attr}"
                assert value.name not in seen, f"{where} and {seen[value.name]}: {value.name}"
                seen[value.name] = where
    assert len(seen) > 20  # the tasks were found
