"""SLED's values added to the choices of ESPnet's own options, through argparse's public API.

argparse offers no public way to change an option's choices once it is added, so the values
go in as ESPnet adds the option: ``with extra_choices(parser, {...}): TTSTask.add_task_arguments(parser)``.
"""

import argparse
from contextlib import contextmanager
from typing import Dict, Iterator, Tuple

# option -> (value added to its choices, text added to its help)
Extra = Dict[str, Tuple[str, str]]


@contextmanager
def extra_choices(parser: argparse.ArgumentParser, extra: Extra) -> Iterator[None]:
    """While inside, ``add_argument`` on ``parser`` and on the groups it makes appends
    ``extra[option]``'s value to that option's ``choices`` (and its text to the help)."""
    adders = {}

    def wrap(target, attribute, make):
        adders[id(target), attribute] = target
        setattr(target, attribute, make(getattr(target, attribute)))

    def adding(add_argument):
        def add(*names, **kwargs):
            value, help_text = extra.get(names[0], (None, "")) if names else (None, "")
            if value is not None and kwargs.get("choices") is not None and value not in kwargs["choices"]:
                kwargs["choices"] = [*kwargs["choices"], value]
                kwargs["help"] = (kwargs.get("help") or "") + help_text
            return add_argument(*names, **kwargs)

        return add

    def grouping(add_argument_group):
        def add_group(*args, **kwargs):
            group = add_argument_group(*args, **kwargs)
            wrap(group, "add_argument", adding)
            return group

        return add_group

    wrap(parser, "add_argument", adding)
    wrap(parser, "add_argument_group", grouping)
    try:
        yield
    finally:
        for (_, attribute), target in adders.items():
            delattr(target, attribute)  # the class's own method again
