"""Searchers: pure state machines from events to decisions (see `base.py`).

`searcher_facts` answers what the engine, the preview, the simulator and the views need to
know about a searcher (its ladders, final length, ...), so none of them switches on its name.
Each searcher class takes its own config type (`SearcherSpec.config()`, spec/searcher_config.py);
`make_searcher` builds a fresh one from the spec; `restore_searcher` rebuilds one from a
snapshot so that it makes exactly the decisions the original would have made.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from cade_cli.errors import SpecError
from cade_cli.plugins import SEARCHERS, load
from cade_cli.search.searchers.base import Decision, ExitReason, SearcherFacts
from cade_cli.search.space import Space
from cade_cli.spec.experiment import SEARCHER_NAMES, SearcherSpec
from cade_cli.spec.sampler import DEFAULT_SAMPLER, SAMPLING_SEARCHERS
from cade_cli.spec.searcher_config import SearcherConfig


class Searcher(Protocol):
    """What every searcher class provides."""

    done: bool

    def start(self) -> list[Decision]: ...

    def on_validation(self, trial: int, length: int, metric: float) -> list[Decision]: ...

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def progress(self) -> float: ...


def searcher_class(name: str) -> Any:
    if name not in SEARCHERS:
        raise SpecError(f"unknown searcher {name!r}",
                        hint=f"choose one of: {', '.join(SEARCHER_NAMES)}")
    return load(*SEARCHERS[name])


def searcher_facts(searcher_spec: SearcherSpec) -> SearcherFacts:
    """Ladders, final length and how trials continue, as the searcher itself states them."""
    config = searcher_spec.config()
    facts: SearcherFacts = searcher_class(config.name).facts(config)
    return facts


def make_searcher(searcher_spec: SearcherSpec, space: Space, seed: int) -> Searcher:
    """A fresh searcher whose random choices all come from `random.Random(seed)`."""
    config = checked_config(searcher_spec)
    searcher: Searcher = searcher_class(config.name)(config, space, random.Random(seed))
    return searcher


def checked_config(searcher_spec: SearcherSpec) -> SearcherConfig:
    """The searcher's config; a sampler it cannot use is refused (the spec loader reports
    that with its line)."""
    config = searcher_spec.config()
    if config.sampler != DEFAULT_SAMPLER and not config.samples:
        raise SpecError(f"searcher.sampler: the {config.name!r} searcher does not "
                        f"sample new params, so sampler {config.sampler!r} cannot apply",
                        hint=f"use it with {', '.join(SAMPLING_SEARCHERS)}, or remove the key")
    return config


def restore_searcher(searcher_spec: SearcherSpec, space: Space,
                     snapshot: dict[str, Any]) -> Searcher:
    """Rebuild a searcher from `snapshot()` output."""
    config = checked_config(searcher_spec)
    searcher: Searcher = searcher_class(config.name).restore(config, space, snapshot)
    return searcher
