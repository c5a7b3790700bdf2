"""`searcher.sampler`: where new trials get their params (a cade extension).

`random` (the default) is Determined's behaviour. `tpe` proposes params from a density model
of the reported results; it needs a searcher that creates trials while results arrive, so
`grid` (fixed points), `single` (one trial) and `pbt` (children explore their parents)
refuse it, located at the key.
"""

from __future__ import annotations

from cade_cli.spec.reader import MapReader
from cade_cli.spec.searcher_config import CONFIG_TYPES

SAMPLER_NAMES = ("random", "tpe")
SAMPLING_SEARCHERS = tuple(name for name, kind in CONFIG_TYPES.items() if kind.samples)
DEFAULT_SAMPLER = "random"


def read_sampler(reader: MapReader, searcher_name: str) -> str:
    """The sampler the searcher mapping asks for, checked against the searcher."""
    sampler = reader.choice("sampler", SAMPLER_NAMES, DEFAULT_SAMPLER)
    if sampler != DEFAULT_SAMPLER and searcher_name and searcher_name not in SAMPLING_SEARCHERS:
        node = reader.entries["sampler"]
        reader.problems.add(node.loc, reader.key_path("sampler"),
                            f"the {searcher_name!r} searcher does not sample new params, so "
                            f"sampler {sampler!r} has nothing to do; it works with "
                            f"{', '.join(SAMPLING_SEARCHERS)} (or remove the key)")
    return sampler
