"""The rewrites behind the `mapped` decisions of `cade_cli.spec.determined.TABLE`.

Each function takes one Determined setting from the located tree and either rewrites it into
the key cade's readers read (a new node keeps the location of the key it came from) or
records it in `Determined` (warnings, what the trial and the job template get).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cade_cli.spec.reader import is_int, suggest
from cade_cli.spec.yamlpos import Node, Problems, describe, to_plain

# Handed to the trial as they are (params.json's experiment_config).
TRIAL_KEYS = ("records_per_epoch", "min_validation_period", "min_checkpoint_period", "scheduling_unit",
              "data", "perform_initial_validation", "checkpoint_policy")
TRIAL_SEARCHER_KEYS = ("source_trial_id", "source_checkpoint_uuid")
CHECKPOINT_POLICIES = ("best", "all", "none")
OBJECT_STORE_KEYS = ("bucket", "prefix", "access_key", "secret_key", "endpoint_url", "container",
                     "connection_string", "account_url", "credential")
STORAGE_TYPES = ("shared_fs", "directory", "s3", "gcs", "azure")
REFUSED_SEARCHERS = {
    "custom": "a custom searcher runs in Determined's master and asks it for trials; cade has no master "
              "to ask: use one of cade's searchers",
    "adaptive": "removed from Determined before 0.26; use adaptive_asha",
    "adaptive_simple": "removed from Determined before 0.26; use adaptive_asha",
    "sync_halving": "removed from Determined before 0.26; use async_halving",
}
# The rest of a refused searcher's keys are judged as those of its successor (its keys are
# that searcher's), so a removed name is one error, not one per key.
_JUDGED_AS = {"adaptive": "adaptive_asha", "adaptive_simple": "adaptive_asha", "sync_halving": "async_halving"}
_CUSTOM_KEYS = ("unit",)   # a custom searcher's own keys, no other searcher's
# The removed searchers' own keys, which their successors lack.
_REMOVED_SEARCHER_KEYS = ("budget", "step_budget", "target_trial_steps", "train_stragglers")
_LAUNCHERS = {"torch_distributed": "torch", "horovod": "horovod", "autohorovod": "horovod",
              "deepspeed": "torch"}
_PYTHON = re.compile(r"(?:.*/)?python[0-9.]*")
CONTAINER = "jobs run in the cluster's own environment, not in a container"
_BUILTIN_TEMPLATE = "the built-in templates do not use it (a site template running Apptainer/Singularity can)"


@dataclass
class Determined:
    """What the normalisation found: warnings and the values handed on."""

    located: list[tuple[int, str]] = field(default_factory=list)   # (line, warning)
    trial_config: dict[str, Any] = field(default_factory=dict)
    image: str | None = None
    bind_mounts: list[str] = field(default_factory=list)
    checkpoint_dir: str | None = None

    def warn(self, node: Node, path: str, message: str) -> None:
        self.located.append((node.key_where.line, f"{node.key_where.where}: {path}: {message}"))

    @property
    def warnings(self) -> list[str]:
        """By line, as the file reads (a stable sort keeps one line's warnings in order)."""
        return [text for _, text in sorted(self.located, key=lambda item: item[0])]


def name_when_absent(root: Node, source: str) -> None:
    """Determined names an experiment for you; cade uses a `description` that reads as a
    name, else the spec file's name.

    Many of Determined's own configs (older ones, and examples still shipped) name the
    experiment in `description` (`description: mnist_pytorch_const`), so that word is what
    their users know it by. Run before the ledger's copy is taken, so a rebuilt spec keeps
    the name.
    """
    if not isinstance(root.value, dict) or root.value.get("name") is not None:
        return
    description = root.value.get("description")
    if description is not None and _reads_as_name(description.value):
        root.value["name"] = Node(description.value, description.loc, description.loc)
    else:
        root.value["name"] = Node(default_name(source), root.loc, root.loc)


def _reads_as_name(description: Any) -> bool:
    """One word of at most 64 characters: `mnist_pytorch_const`, not a sentence."""
    return (isinstance(description, str) and 0 < len(description) <= 64
            and description.split() == [description])


def rewrite(root: Node, problems: Problems, found: Determined) -> None:
    top = root.value
    assert isinstance(top, dict)
    _entrypoint(top, problems, found)
    _resources(top, problems, found)
    _searcher(top, problems, found)
    _checkpoints(top, problems, found)
    _container(top, problems, found)
    for key in TRIAL_KEYS:
        if key in top and top[key].value is not None:
            found.trial_config[key] = to_plain(top[key])
    searcher = _section(top, "searcher")
    for key in TRIAL_SEARCHER_KEYS:
        if key in searcher and searcher[key].value is not None:
            found.trial_config.setdefault("searcher", {})[key] = to_plain(searcher[key])


def default_name(source: str) -> str:
    return "experiment" if source.startswith("<") else Path(source).stem


def _section(top: dict[str, Node], key: str, create_at: Node | None = None) -> dict[str, Node]:
    """The entries of a mapping section. An absent (or null) one is created, located at
    `create_at`, when that is given; otherwise it reads as empty."""
    node = top.get(key)
    if (node is None or node.value is None) and create_at is not None:
        node = top[key] = Node({}, create_at.loc, create_at.key_where)
    return node.value if node is not None and isinstance(node.value, dict) else {}


def _set(section: dict[str, Node], key: str, value: Any, like: Node) -> None:
    section[key] = Node(value, like.loc, like.key_where)


def _entrypoint(top: dict[str, Node], problems: Problems, found: Determined) -> None:
    node = top.get("entrypoint")
    if node is None:
        return
    if isinstance(node.value, str):
        try:
            words = shlex.split(node.value)
        except ValueError:
            return  # cade's reader reports it
    elif isinstance(node.value, list) and all(isinstance(item.value, str) for item in node.value):
        words = [item.value for item in node.value]
    else:
        return
    split = launcher_prefix(words)
    if split is None:
        return
    module, launcher, options, script = split
    if not launcher:
        problems.add(node.loc, "entrypoint", f"not supported: Determined launcher {module!r}; cade runs "
                                             f"{', '.join(sorted(_LAUNCHERS))} as its own torch or horovod "
                                             "launcher")
        return
    top["entrypoint"] = Node(shlex.join(script), node.loc, node.key_where)
    resources = _section(top, "resources", create_at=node)
    if "launcher" not in resources:
        _set(resources, "launcher", launcher, node)
    message = f"{module} runs as cade's {launcher} launcher (resources.launcher: {launcher})"
    if options:
        message += f"; its options {shlex.join(options)!r} are dropped (resources sets the layout)"
    found.warn(node, "entrypoint", message)


def launcher_prefix(words: list[str]) -> tuple[str, str, list[str], list[str]] | None:
    """`python3 -m determined.launch.X [OPTS --] SCRIPT...` -> (module, cade launcher, OPTS, SCRIPT)."""
    if len(words) < 3 or not _PYTHON.fullmatch(words[0]) or words[1] != "-m":
        return None
    module = words[2]
    if not module.startswith("determined.launch."):
        return None
    rest = words[3:]
    options: list[str] = []
    if "--" in rest:
        cut = rest.index("--")
        options, rest = rest[:cut], rest[cut + 1:]
    trial: list[str] = []
    # The launcher's own flags come before the script, in any order (argparse, as Determined
    # parses them): --trial names a Trial class (cade's entrypoint reader says what to do);
    # --autohorovod (horovod's) only skips horovodrun for one slot, and is dropped.
    while rest and (rest[0] in ("--trial", "--autohorovod") or rest[0].startswith("--trial=")):
        flag, _, value = rest[0].partition("=")
        if flag == "--autohorovod":
            options, rest = options + [flag], rest[1:]
        elif value:
            trial, rest = [value], rest[1:]
        else:
            trial, rest = rest[1:2], rest[2:]
    return module, _LAUNCHERS.get(module.removeprefix("determined.launch."), ""), options, trial + rest


def _resources(top: dict[str, Node], problems: Problems, found: Determined) -> None:
    resources = _section(top, "resources")
    slots = resources.get("slots_per_trial")
    if slots is not None and slots.value == 0 and is_int(slots.value):
        _set(resources, "slots_per_trial", 1, slots)
        _set(resources, "slot_type", "cpu", slots)
        if "launcher" not in resources:
            _set(resources, "launcher", "none", slots)
    elif slots is not None and is_int(slots.value) and "slot_type" not in resources:
        found.warn(slots, "resources.slots_per_trial",
                   f"{slots.value} slot(s) taken as CPU tasks: Determined's slots are GPUs, cade's "
                   "default slot_type is cpu; add resources.slot_type: gpu for GPUs")
    single = resources.pop("is_single_node", None)
    per_trial = resources.get("slots_per_trial")
    if single is not None and not isinstance(single.value, bool):
        problems.add(single.loc, "resources.is_single_node", f"expected true or false, found {describe(single)}")
    elif single is not None and single.value and per_trial is not None and is_int(per_trial.value):
        resources.setdefault("slots_per_node", Node(per_trial.value, single.loc, single.key_where))
    _max_slots(top, resources, problems)
    timeout = top.pop("preemption_timeout", None)
    if timeout is None or timeout.value is None:
        return
    if not is_int(timeout.value) or timeout.value < 0:
        problems.add(timeout.loc, "preemption_timeout", f"expected an integer >= 0 (seconds), "
                                                        f"found {describe(timeout)}")
        return
    _section(top, "resources", create_at=timeout).setdefault(
        "preempt_notice", Node(timeout.value, timeout.loc, timeout.key_where))


def _max_slots(top: dict[str, Node], resources: dict[str, Node], problems: Problems) -> None:
    """max_slots bounds the experiment's slots: fewer trials at once."""
    cap_node = resources.pop("max_slots", None)
    if cap_node is None or cap_node.value is None:
        return
    if not is_int(cap_node.value) or cap_node.value < 1:
        problems.add(cap_node.loc, "resources.max_slots", f"expected an integer >= 1, found {describe(cap_node)}")
        return
    per_trial = resources.get("slots_per_trial")
    slots = per_trial.value if per_trial is not None and is_int(per_trial.value) and per_trial.value > 0 else 1
    cap = max(1, cap_node.value // slots)
    searcher = _section(top, "searcher")
    given = searcher.get("max_concurrent_trials")
    # Absent, the searcher reader's default applies; a cap of 16 or more cannot lower it.
    current = given.value if given is not None and is_int(given.value) else None
    if "searcher" in top and (current is None and cap < 16 or current == 0 or (current or 0) > cap):
        _set(searcher, "max_concurrent_trials", cap, cap_node)


# Metric names that are better when larger: with smaller_is_better left at its default
# (true, as in Determined) the search would look for the worst model.
_LARGER_IS_BETTER = re.compile(r"(^|[^a-z])(acc|accuracy|auc|auroc|f1|precision|recall|bleu|iou|"
                               r"map|reward|return|r2)($|[^a-z])", re.IGNORECASE)


def _searcher(top: dict[str, Node], problems: Problems, found: Determined) -> None:
    searcher = _section(top, "searcher")
    metric = searcher.get("metric")
    if "smaller_is_better" not in searcher and metric is not None and isinstance(metric.value, str) \
            and _LARGER_IS_BETTER.search(metric.value):
        found.warn(metric, "searcher.metric",
                   f"{metric.value!r} reads as larger-is-better, but smaller_is_better is not "
                   f"given and defaults to true (as in Determined): the search will minimise it; "
                   f"set searcher.smaller_is_better: false if larger is better")
    name = searcher.get("name")
    if name is not None and isinstance(name.value, str) and name.value in REFUSED_SEARCHERS:
        problems.add(name.loc, "searcher.name", f"not supported: {name.value!r}: {REFUSED_SEARCHERS[name.value]}")
        for key in _CUSTOM_KEYS if name.value == "custom" else _REMOVED_SEARCHER_KEYS:
            searcher.pop(key, None)
        if name.value in _JUDGED_AS:  # the spec fails on the name: max_trials is not asked for
            searcher.setdefault("max_trials", Node(1, name.loc, name.key_where))
        _set(searcher, "name", _JUDGED_AS.get(name.value, "single"), name)
    divisor = searcher.get("divisor")
    if divisor is not None and isinstance(divisor.value, float):
        if divisor.value.is_integer():
            _set(searcher, "divisor", int(divisor.value), divisor)
        else:
            problems.add(divisor.loc, "searcher.divisor",
                         f"expected a whole number >= 2 (cade's rung arithmetic is Determined's integer "
                         f"form), found {describe(divisor)}")
            del searcher["divisor"]


def _checkpoints(top: dict[str, Node], problems: Problems, found: Determined) -> None:
    policy = top.get("checkpoint_policy")
    storage = _section(top, "checkpoint_storage")
    if policy is not None and policy.value not in CHECKPOINT_POLICIES:
        text = policy.value if isinstance(policy.value, str) else ""
        problems.add(policy.loc, "checkpoint_policy", f"expected one of {', '.join(CHECKPOINT_POLICIES)}, "
                                                      f"found {describe(policy)}"
                                                      f"{suggest(text, CHECKPOINT_POLICIES, listing=False)}")
    elif policy is not None and policy.value == "none":
        _section(top, "checkpoint_storage", create_at=policy).setdefault(
            "save_trial_best", Node(0, policy.loc, policy.key_where))
    _storage_type(top, storage, problems, found)


def _storage_type(top: dict[str, Node], storage: dict[str, Node], problems: Problems,
                  found: Determined) -> None:
    kind = storage.pop("type", None)
    host = storage.pop("host_path", None)
    sub = storage.pop("storage_path", None)
    container = storage.pop("container_path", None)
    for key in OBJECT_STORE_KEYS:  # said once, by the type's warning
        storage.pop(key, None)
    if kind is None:
        return
    if kind.value not in STORAGE_TYPES:
        text = kind.value if isinstance(kind.value, str) else ""
        problems.add(kind.loc, "checkpoint_storage.type", f"expected one of {', '.join(STORAGE_TYPES)}, "
                                                          f"found {describe(kind)}"
                                                          f"{suggest(text, STORAGE_TYPES, listing=False)}")
    elif kind.value == "shared_fs":
        if host is None or not isinstance(host.value, str) or not host.value.strip():
            problems.add(kind.key_where, "checkpoint_storage.host_path",
                         "missing; expected a directory (shared_fs needs it)")
            return
        path = host.value
        if sub is not None and isinstance(sub.value, str):
            path = os.path.join(path, sub.value)
        found.checkpoint_dir = path
        _warn_node_local(host, "checkpoint_storage.host_path", path, found)
    elif kind.value == "directory":
        if container is None or not isinstance(container.value, str) or not container.value.strip():
            problems.add(kind.key_where, "checkpoint_storage.container_path",
                         "missing; expected a directory (type directory needs it)")
            return
        found.checkpoint_dir = container.value
        _warn_node_local(container, "checkpoint_storage.container_path", container.value, found)
    else:
        found.warn(kind, "checkpoint_storage.type",
                   f"{kind.value!r}: checkpoints stay in each trial's run directory; cade uploads nothing "
                   "(copy them with your own tools, or use shared_fs)")


def _warn_node_local(node: Node, path: str, directory: str, found: Determined) -> None:
    """Determined's examples keep checkpoints in /tmp of the agent; on a cluster each node has
    its own /tmp, so a trial resumed or promoted on another node would not find them."""
    parts = Path(os.path.normpath(directory)).parts
    if parts[:2] in (("/", "tmp"), ("/", "dev")) or parts[:3] == ("/", "var", "tmp"):
        found.warn(node, path, f"{directory!r} is local to each node on most clusters: a trial "
                               f"resumed on another node cannot read its checkpoints there; give a "
                               f"directory on a shared filesystem (the local backend is fine)")


def _container(top: dict[str, Node], problems: Problems, found: Determined) -> None:
    environment = _section(top, "environment")
    image = environment.pop("image", None)
    if image is not None and image.value is not None:
        found.image = _image(image, _slot_type(top), problems)
        if found.image:
            found.warn(image, "environment.image", f"{found.image!r} is passed to the job template as "
                                                   f"`image`; {_BUILTIN_TEMPLATE}")
    mounts = top.get("bind_mounts")
    if mounts is None or mounts.value is None:
        return
    if not isinstance(mounts.value, list):
        problems.add(mounts.loc, "bind_mounts", f"expected a list of mounts, found {describe(mounts)}")
        return
    for index, item in enumerate(mounts.value):
        mount = _bind_mount(item, f"bind_mounts[{index}]", problems, found)
        if mount:
            found.bind_mounts.append(mount)
    if found.bind_mounts:
        found.warn(mounts, "bind_mounts", f"passed to the job template as `bind_mounts` "
                                          f"(HOST:CONTAINER[:ro]); {_BUILTIN_TEMPLATE}")


def _slot_type(top: dict[str, Node]) -> str:
    slot_type = _section(top, "resources").get("slot_type")
    return slot_type.value if slot_type is not None and slot_type.value in ("gpu", "cpu") else "cpu"


def _image(node: Node, slot_type: str, problems: Problems) -> str | None:
    """A string, or Determined's {cpu, cuda, rocm} form: the image for the slot type."""
    if isinstance(node.value, str) and node.value.strip():
        return node.value
    if isinstance(node.value, dict) and set(node.value) <= {"cpu", "cuda", "gpu", "rocm"}:
        chosen = node.value.get("cuda" if slot_type == "gpu" else "cpu") or node.value.get("gpu")
        return chosen.value if chosen is not None and isinstance(chosen.value, str) else None
    problems.add(node.loc, "environment.image", f"expected an image name or a mapping with cpu, cuda, rocm, "
                                                f"found {describe(node)}")
    return None


def _bind_mount(item: Node, path: str, problems: Problems, found: Determined) -> str | None:
    entries = item.value if isinstance(item.value, dict) else {}
    host, inside = entries.get("host_path"), entries.get("container_path")
    if not (host is not None and isinstance(host.value, str) and inside is not None
            and isinstance(inside.value, str)):
        problems.add(item.loc, path, "expected a mapping with host_path and container_path, "
                                     f"found {describe(item)}")
        return None
    propagation = entries.get("propagation")
    if propagation is not None:
        found.warn(propagation, "bind_mounts[].propagation", "a container mount option; " + CONTAINER)
    read_only = entries.get("read_only")
    suffix = ":ro" if read_only is not None and read_only.value is True else ""
    return f"{host.value}:{inside.value}{suffix}"
