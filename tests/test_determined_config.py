"""Determined's experiment configs (0.26 to 0.38) under cade: every key of the table decided.

The fixtures in tests/data/determined/ are written in Determined's forms for this project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli
from cade_cli.errors import SpecError
from cade_cli.jobs import render
from cade_cli.jobs.rundir import prepare_segment
from cade_cli.spec.determined import TABLE, WARNED, table_path
from cade_cli.spec.determined_map import OBJECT_STORE_KEYS
from cade_cli.spec.experiment import (
    ExperimentSpec,
    load_spec,
    parse_spec,
    spec_from_raw,
)
from cade_cli.spec.yamlpos import Node, Problems, compose, join_path

DATA = Path(__file__).parent / "data" / "determined"
ACCEPTED = ("core_api_038.yaml", "asha_epochs_037.yaml", "grid_horovod_026.yaml", "async_stop_once_032.yaml",
            "gcs_random_030.yaml", "pbt_029.yaml")
REJECTED = ("misspelled.yaml", "refused.yaml", "bad_divisor.yaml")


def located_keys(name: str) -> dict[str, Node]:
    """Every key path of a fixture (list items as `[]`), with its node (first occurrence)."""
    root = compose((DATA / name).read_text(), str(DATA / name), Problems())
    assert root is not None
    found: dict[str, Node] = {}

    def walk(node: Node, path: str) -> None:
        if isinstance(node.value, dict):
            for key, child in node.value.items():
                child_path = join_path(path, key)
                found.setdefault(table_path(child_path), child)
                walk(child, child_path)
        elif isinstance(node.value, list):
            for index, item in enumerate(node.value):
                walk(item, f"{path}[{index}]")

    walk(root, "")
    return found


def load(name: str, *overrides: str) -> ExperimentSpec:
    return load_spec(DATA / name, overrides)


def error_lines(name: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(name)
    return [line.removeprefix(f"{DATA}/") for line in caught.value.message.splitlines()]


def test_every_key_of_the_table_is_in_a_fixture() -> None:
    present = set().union(*(located_keys(name) for name in ACCEPTED))
    listed = {path for path in TABLE if not path.endswith("*")}
    assert sorted(listed - present) == []


@pytest.mark.parametrize("name", ACCEPTED)
def test_fixture_is_accepted_and_each_warned_key_warns_once(name: str) -> None:
    spec = load(name)
    for path, node in located_keys(name).items():
        decision = TABLE.get(path)
        parent = path.rpartition(".")[0]
        if decision is None or decision.kind != WARNED or path.rpartition(".")[2] in OBJECT_STORE_KEYS:
            continue
        if TABLE.get(parent) is not None and TABLE[parent].kind == WARNED:
            continue  # said once, by the section's warning
        line = f"{DATA / name}:{node.key_where.line}: {path}: {decision.note}"
        assert spec.warnings.count(line) == 1, (line, spec.warnings)


def test_warnings_come_sorted_by_line() -> None:
    for name in ACCEPTED:
        lines = [int(text.split(":")[1]) for text in load(name).warnings]
        assert lines == sorted(lines)


def test_core_api_038_maps_name_launcher_layout_storage_and_trial_settings() -> None:
    spec = load("core_api_038.yaml")
    assert spec.name == "core_api_038"
    assert spec.entrypoint == ("python3", "train_core.py", "--epochs", "2")
    assert spec.resources.launcher == "torch"
    assert (spec.resources.slots_per_trial, spec.resources.slots_per_node) == (2, 2)
    assert spec.resources.resource_pool == "gpu-a100"
    assert spec.resources.preempt_notice == 300
    assert spec.max_restarts == 2
    assert spec.checkpoint_storage.directory == "/scratch/checkpoints/determined-checkpoint"
    assert spec.searcher.max_length is None  # optional since 0.38: the trial decides its length
    assert spec.image == "determinedai/pytorch-ngc:0.38.0"
    assert spec.bind_mounts == ("/scratch/datasets:/data:ro", "/scratch/out:/out")
    assert spec.trial_config == {
        "data": {"url": "https://example.org/digits.tgz", "augment": {"flip": True}},
        "records_per_epoch": 1797,
        "min_validation_period": {"epochs": 1},
        "min_checkpoint_period": {"batches": 200},
        "scheduling_unit": 50,
        "perform_initial_validation": True,
        "checkpoint_policy": "all",
    }
    where = f"{DATA / 'core_api_038.yaml'}"
    assert list(spec.warnings[:2]) == [
        (f"{where}:2: entrypoint: determined.launch.torch_distributed runs as cade's torch launcher "
        "(resources.launcher: torch); its options '--max_restarts 0' are dropped (resources sets the layout)"),
        f"{where}:6: labels: {TABLE['labels'].note}",
    ]
    assert (f"{where}:56: resources.slots_per_trial: 2 slot(s) taken as CPU tasks: Determined's slots are "
            "GPUs, cade's default slot_type is cpu; add resources.slot_type: gpu for GPUs") in spec.warnings
    assert not any("max_length" in text for text in spec.warnings)
    assert any(text.startswith(f"{where}:45: environment.image: 'determinedai/pytorch-ngc:0.38.0' is passed "
                               "to the job template as `image`; the built-in templates do not use it")
               for text in spec.warnings)


def test_asha_epochs_037_maps_time_metric_divisor_max_slots_and_policy() -> None:
    spec = load("asha_epochs_037.yaml")
    assert (spec.searcher.time_metric, spec.searcher.max_length) == ("epochs", 9)
    assert spec.searcher.length_unit == "epochs"
    assert spec.searcher.divisor == 3 and isinstance(spec.searcher.divisor, int)
    assert spec.searcher.max_concurrent_trials == 4          # max_slots 8 // slots_per_trial 2
    assert spec.checkpoint_storage.save_trial_best == 0      # checkpoint_policy: none
    assert spec.checkpoint_storage.directory is None         # s3: checkpoints stay in the run directory
    assert spec.resources.slot_type == "gpu"
    assert not any("slots_per_trial" in text for text in spec.warnings)
    assert (f"{DATA / 'asha_epochs_037.yaml'}:36: checkpoint_storage.type: 's3': checkpoints stay in each "
            "trial's run directory; cade uploads nothing (copy them with your own tools, or use shared_fs)"
            ) in spec.warnings


@pytest.mark.parametrize(("kind", "settings"), [
    ("s3", "bucket: b\n  access_key: k\n  secret_key: s\n  endpoint_url: http://minio:9000"),
    ("gcs", "bucket: b\n  prefix: exp"),
    ("azure", "container: c\n  connection_string: x\n  account_url: y\n  credential: z"),
])
def test_object_stores_warn_once_and_keep_checkpoints_in_the_run_directory(kind: str, settings: str) -> None:
    spec = parse_spec(f"{MINIMAL}checkpoint_storage:\n  type: {kind}\n  {settings}\n  save_trial_best: 2\n",
                      "spec.yaml")
    assert spec.checkpoint_storage.directory is None and spec.checkpoint_storage.save_trial_best == 2
    assert list(spec.warnings) == [
        (f"spec.yaml:5: checkpoint_storage.type: {kind!r}: checkpoints stay in each trial's run directory; "
        "cade uploads nothing (copy them with your own tools, or use shared_fs)")]


def test_grid_horovod_026_maps_cpu_only_job_and_per_device_forms() -> None:
    spec = load("grid_horovod_026.yaml")
    assert (spec.resources.slots_per_trial, spec.resources.slot_type) == (1, "cpu")
    assert spec.resources.launcher == "horovod"
    assert spec.entrypoint == ("python3", "train_hvd.py")
    assert spec.image == "determinedai/environments:py-3.8-pytorch-1.12-cpu"
    assert spec.environment_variables == (("MODE", "cpu"),)
    assert (spec.searcher.max_length, spec.searcher.length_unit) == (500, "batches")
    assert spec.trial_config == {"searcher": {"source_trial_id": 17,
                                              "source_checkpoint_uuid": "3f7c2a9e-0000-4000-8000-000000000000"}}
    assert (spec.slurm.slots_per_node, spec.slurm.gpu_type, spec.pbs.slots_per_node) == (4, "a100", 4)


def test_async_032_maps_deepspeed_and_directory_storage() -> None:
    spec = load("async_stop_once_032.yaml")
    assert spec.resources.launcher == "torch"
    assert spec.entrypoint == ("python3", "train_ds.py")
    assert spec.checkpoint_storage.directory == "/mnt/checkpoints"
    assert (spec.searcher.stop_once, spec.searcher.length_unit) == (True, "epochs")


def test_slot_type_given_for_gpus_keeps_the_launcher_the_spec_names() -> None:
    spec = load("core_api_038.yaml", "resources.slot_type=gpu", "resources.launcher=none")
    assert (spec.resources.slot_type, spec.resources.launcher) == ("gpu", "none")
    assert not any("slots_per_trial" in text for text in spec.warnings)


def test_rebuilding_from_the_ledger_maps_again() -> None:
    spec = load("core_api_038.yaml")
    again = spec_from_raw(spec.raw, str(DATA / "core_api_038.yaml"))
    assert again == spec
    assert again.trial_config == spec.trial_config
    assert spec_from_raw(spec.raw).name == "core_api_038"   # the default name is kept in the ledger
    # The ledger keeps no lines: the same warnings, located in the spec file only.
    assert sorted(text.split(": ", 1)[1] for text in again.warnings) == sorted(
        text.split(": ", 1)[1] for text in spec.warnings)


def test_misspellings_are_unknown_keys_with_did_you_mean() -> None:
    assert error_lines("misspelled.yaml") == [
        "misspelled.yaml:3: min_validaton_period: unknown key; did you mean 'min_validation_period'?",
        "misspelled.yaml:5: checkpoint_polcy: unknown key; did you mean 'checkpoint_policy'?",
        "misspelled.yaml:7: profiling.enabeld: unknown key; did you mean 'enabled'?",
        "misspelled.yaml:9: bind_mounts[0].host_pth: unknown key; did you mean 'host_path'?",
        ("misspelled.yaml:9: bind_mounts[0]: expected a mapping with host_path and container_path, "
        "found a mapping"),
        "misspelled.yaml:12: resources.max_slot: unknown key; did you mean 'max_slots'?",
        "misspelled.yaml:14: environment.imag: unknown key; did you mean 'image'?",
        "misspelled.yaml:16: checkpoint_storage.host_pat: unknown key; did you mean 'host_path'?",
        "misspelled.yaml:21: searcher.source_trail_id: unknown key; did you mean 'source_trial_id'?",
    ]


def test_refused_values_say_why_with_file_and_line() -> None:
    assert error_lines("refused.yaml") == [
        ("refused.yaml:2: entrypoint: not supported: Determined launcher 'determined.launch.mpirun'; cade runs "
        "autohorovod, deepspeed, horovod, torch_distributed as its own torch or horovod launcher"),
        "refused.yaml:3: checkpoint_policy: expected one of best, all, none, found 'sometimes' (a string)",
        ("refused.yaml:5: checkpoint_storage.type: expected one of shared_fs, directory, s3, gcs, azure, "
        "found 'shared_fss' (a string); did you mean 'shared_fs'?"),
        ("refused.yaml:7: searcher.name: not supported: 'custom': a custom searcher runs in Determined's master "
        "and asks it for trials; cade has no master to ask: use one of cade's searchers"),
    ]
    assert error_lines("bad_divisor.yaml") == [
        ("bad_divisor.yaml:11: searcher.divisor: expected a whole number >= 2 (cade's rung arithmetic is "
        "Determined's integer form), found 2.5 (a number)"),
    ]


@pytest.mark.parametrize("entrypoint, launcher", [
    ("python3 -m determined.launch.torch_distributed --trial model_def:MnistTrial", "torch"),
    ("python3 -m determined.launch.deepspeed --trial=model_def:MnistTrial", "torch"),
    # Determined's own examples put horovod's --autohorovod flag first, without `--`.
    ("python3 -m determined.launch.horovod --autohorovod --trial model_def:MnistTrial", "horovod"),
    ("python3 -m determined.launch.horovod --fusion-threshold-mb 1 -- --trial=model_def:MnistTrial",
     "horovod"),
])
def test_trial_class_behind_a_launcher_runs_in_the_trial_harness(entrypoint: str, launcher: str) -> None:
    text = (DATA / "async_stop_once_032.yaml").read_text().replace(
        "[python3, -m, determined.launch.deepspeed, python3, train_ds.py]", entrypoint)
    source = DATA.parent.parent / "trial_class.yaml"
    spec = parse_spec(text, str(source))
    assert spec.entrypoint == ("python3", "-m", "cade_cli.det.pytorch.run", "--config", "trial_class.yaml",
                               "model_def:MnistTrial")
    assert spec.resources.launcher == launcher


def test_mapped_values_reach_the_job_params_json_and_checkpoint_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    spec = load("core_api_038.yaml", f"checkpoint_storage.host_path={shared}")
    paths = prepare_segment(spec=spec, experiment_id=3, trial_id=1, segment=1, params={"lr": 0.01},
                            start_length=0, target_length=1, report_at=[1], resume_from=None, trial_seed=5,
                            backend="slurm", exp_root=tmp_path / "exp")
    params = json.loads((paths.trial_dir / "params.json").read_text())
    assert params["experiment_config"] == spec.trial_config
    script = paths.script.read_text()
    assert "python3 train_core.py --epochs 2" in script and "determined.launch" not in script
    assert "--partition=gpu-a100" in script
    link = paths.trial_dir / "checkpoints"
    assert link.is_symlink()
    assert str(link.readlink()).startswith(str(shared / "determined-checkpoint" / "cade-3-"))
    # A checkpoint saved through cade's trial API lands on the shared directory.
    env = dict(os.environ, CADE_TRIAL_DIR=str(paths.trial_dir), CADE_RUN_DIR=str(paths.run_dir),
               CADE_TRIAL_ID="1", CADE_SEGMENT="1", PYTHONPATH=str(Path(__file__).parent.parent))
    code = ("from cade_cli import report\n"
            "with report.checkpoint(1) as d:\n"
            "    (d / 'model.txt').write_text('weights')\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    saved = list(shared.glob("determined-checkpoint/cade-3-*/1/1/model.txt"))
    assert [path.read_text() for path in saved] == ["weights"]


def test_template_context_and_length_unit(tmp_path: Path) -> None:
    spec = load("asha_epochs_037.yaml")
    env = render.cade_environment(spec, backend="slurm", experiment_id=1, trial_id=1, segment=1, run_dir=tmp_path,
                                  trial_dir=tmp_path, start_length=0, target_length=1, report_at=[1],
                                  resume_from=None, trial_seed=0)
    assert env["CADE_LENGTH_UNIT"] == "epochs"
    core = load("core_api_038.yaml")
    context = render.build_context(core, backend="slurm", job_name="cade-1-1-1", cade_env=env)
    assert context["image"] == "determinedai/pytorch-ngc:0.38.0"
    assert context["bind_mounts"] == ["/scratch/datasets:/data:ro", "/scratch/out:/out"]


def test_preview_names_the_asha_variant_and_the_length_unit() -> None:
    result = CliRunner().invoke(cli, ["preview", str(DATA / "asha_epochs_037.yaml")], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "rung lengths (epochs)" in result.stdout
    assert ("ASHA variant: promotion type (stop_once: false): a trial outside the top 1/3 of its rung waits "
            "and can be promoted later; for stopping type set searcher.stop_once: true (Determined 0.38 runs "
            "stopping type when stop_once is not given)") in " ".join(result.stdout.split())
    assert "warning: " in result.stderr and "optimizations:" in result.stderr
    stopping = CliRunner().invoke(cli, ["preview", str(DATA / "async_stop_once_032.yaml")])
    assert "ASHA variant: stopping type (stop_once: true)" in " ".join(stopping.stdout.split())
    plain = CliRunner().invoke(cli, ["preview", str(DATA / "pbt_029.yaml")])
    assert "ASHA variant" not in plain.output


def test_submit_dry_run_says_the_variant_and_warns(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["submit", "--dry-run", "--scheduler", "slurm",
                                      str(DATA / "asha_epochs_037.yaml")])
    assert result.exit_code == 0, result.output
    assert "CADE_LENGTH_UNIT=epochs" in result.stdout or "CADE_LENGTH_UNIT='epochs'" in result.stdout
    assert "ASHA variant: promotion type" in result.stderr
    assert "warning: " in result.stderr and "ASHA variant" not in result.stdout


@pytest.mark.parametrize("name", ACCEPTED)
def test_every_fixture_submits_dry_on_slurm(name: str) -> None:
    result = CliRunner().invoke(cli, ["submit", "--dry-run", "--scheduler", "slurm", str(DATA / name)])
    assert result.exit_code == 0, result.output
    assert "#SBATCH" in result.stdout



def test_the_from_determined_page_lists_every_key_with_its_decision() -> None:
    """The page's table is the code's table, row for row (a `|` in a note reads `/`)."""
    page = (Path(__file__).parent.parent / "docs" / "determined.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    expected = [f"| `{path}` | {decision.kind} | {decision.note.replace('|', '/')} |"
                for path, decision in TABLE.items() if not path.endswith("*")]
    assert rows == expected


MINIMAL = "name: m\nentrypoint: python3 train.py\nsearcher: {name: single, metric: loss, max_length: 5}\n"


def test_preemption_timeout_without_resources_is_the_notice() -> None:
    spec = parse_spec(MINIMAL + "preemption_timeout: 45\ncheckpoint_policy: none\n", "spec.yaml")
    assert spec.resources.preempt_notice == 45
    assert spec.checkpoint_storage.save_trial_best == 0


def test_bad_values_of_mapped_resource_keys_are_errors_with_lines() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(MINIMAL + "resources: {max_slots: 0, is_single_node: 'yes'}\npreemption_timeout: soon\n",
                   "spec.yaml")
    assert caught.value.message.splitlines() == [
        "spec.yaml:4: resources.is_single_node: expected true or false, found 'yes' (a string)",
        "spec.yaml:4: resources.max_slots: expected an integer >= 1, found 0 (an integer)",
        "spec.yaml:5: preemption_timeout: expected an integer >= 0 (seconds), found 'soon' (a string)",
    ]


TRAIN_038 = '''\
import json, os
from pathlib import Path
from cade_cli import report
config = json.loads(Path(os.environ["CADE_PARAMS_FILE"]).read_text())["experiment_config"]
epochs = 3  # a 0.38 script decides its own length
for epoch in range(1, epochs + 1):
    report.report_validation(epoch, {"loss": 1.0 / epoch, "records": config["records_per_epoch"]})
with report.checkpoint(epochs) as directory:
    (directory / "unit").write_text(report.length_unit())
'''


def test_a_038_config_runs_on_the_local_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No name, no max_length, a data section and shared_fs storage: submitted unedited."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADE_CONFIG", os.devnull)
    monkeypatch.setenv("CADE_POLL_INTERVAL", "0.05")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    monkeypatch.delenv("CADE_LEDGER", raising=False)
    (tmp_path / "train.py").write_text(TRAIN_038)
    (tmp_path / "digits.yaml").write_text(f"""\
entrypoint: {sys.executable} train.py
records_per_epoch: 1797
min_validation_period: {{epochs: 1}}
data: {{url: https://example.org/digits.tgz}}
checkpoint_storage:
  type: shared_fs
  host_path: {tmp_path / "shared"}
  storage_path: ckpt
resources:
  slots_per_trial: 0
searcher:
  name: single
  metric: loss
""")
    result = CliRunner().invoke(cli, ["submit", "digits.yaml", "--scheduler", "local", "--slots", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "max_length" not in result.stderr
    status = json.loads(CliRunner().invoke(cli, ["status", "--json", "digits"]).output)
    assert status["experiment"]["state"] == "completed"
    # Without max_length the script decides: 3 epochs, and its exit 0 completes the trial.
    assert [(t["state"], t["length"]) for t in status["trials"]] == [("completed", 3)]
    saved = list((tmp_path / "shared" / "ckpt").glob("cade-*/1/3/unit"))
    assert [path.read_text() for path in saved] == ["batches"]


@pytest.mark.parametrize("directory, warned", [
    ("/tmp", True), ("/var/tmp/ckpt", True), ("/dev/shm", True),
    ("/scratch/ckpt", False), ("/tmpfs-shared/ckpt", False),
])
def test_checkpoints_in_a_node_local_directory_warn(directory: str, warned: bool) -> None:
    spec = load("core_api_038.yaml", f"checkpoint_storage.host_path={directory}")
    local = [w for w in spec.warnings if "local to each node" in w]
    expected = (f"--config: checkpoint_storage.host_path: '{directory}/determined-checkpoint' "
                "is local to each node on most clusters: a trial resumed on another node "
                "cannot read its checkpoints there; give a directory on a shared filesystem "
                "(the local backend is fine)")
    assert local == ([expected] if warned else [])


@pytest.mark.parametrize("description, name", [
    ("mnist_pytorch_const", "mnist_pytorch_const"),   # as many of Determined's configs name it
    ("a Core API script in 0.38's form", "const"),    # a sentence: the file's name
    (None, "const"),
])
def test_a_one_word_description_names_an_unnamed_experiment(tmp_path: Path, description: str | None,
                                                            name: str) -> None:
    path = tmp_path / "const.yaml"
    path.write_text((f"description: {description}\n" if description else "")
                    + "entrypoint: python3 train.py\nsearcher:\n  name: single\n  metric: loss\n"
                    "  max_length: 5\n")
    spec = load_spec(path, ())
    assert (spec.name, spec.description) == (name, description or "")
    assert spec_from_raw(spec.raw).name == name   # kept in the ledger's copy


SIMPLE_KEYS = "  max_trials: 8\n  mode: standard\n  max_rungs: 3\n  divisor: 4\n  max_length: 90\n"
# Determined's pre-0.26 `adaptive` counted a `budget`, not `max_trials`.
ADAPTIVE_KEYS = "  max_length: 64\n  budget: 600\n  train_stragglers: true\n  mode: standard\n"


@pytest.mark.parametrize("name, keys", [("adaptive_simple", SIMPLE_KEYS), ("adaptive", ADAPTIVE_KEYS)])
def test_a_removed_searcher_is_one_error_not_one_per_key(tmp_path: Path, name: str, keys: str) -> None:
    spec = tmp_path / "old.yaml"
    spec.write_text(f"name: old\nentrypoint: python3 train.py\nsearcher:\n  name: {name}\n"
                    f"  metric: loss\n{keys}")
    result = CliRunner().invoke(cli, ["preview", str(spec)], terminal_width=400)
    assert (result.exit_code, result.output) == (2, (
        f"Error: {spec}:4: searcher.name: not supported: {name!r}: removed from Determined "
        "before 0.26; use adaptive_asha\n"))


def test_step_keys_of_determined_before_0_13_say_what_replaced_them(tmp_path: Path) -> None:
    spec = tmp_path / "steps.yaml"
    spec.write_text("name: steps\nentrypoint: python3 train.py\nbatches_per_step: 10\n"
                    "searcher:\n  name: single\n  metric: loss\n  max_steps: 5\n")
    result = CliRunner().invoke(cli, ["preview", str(spec)], terminal_width=400)
    removed = ("unknown key: removed in Determined 0.13 with steps (batches_per_step batches each, "
               "100 unless given); use")
    assert (result.exit_code, result.output) == (2, (
        f"Error: {spec}:3: batches_per_step: {removed} lengths in batches, records or epochs\n"
        f"{spec}:7: searcher.max_steps: {removed} searcher.max_length\n"))


def test_a_custom_searcher_is_one_error_its_unit_key_included(tmp_path: Path) -> None:
    spec = tmp_path / "custom.yaml"
    spec.write_text("name: c\nentrypoint: python3 train.py\n"
                    "searcher:\n  name: custom\n  metric: loss\n  unit: batches\n")
    result = CliRunner().invoke(cli, ["preview", str(spec)], terminal_width=400)
    assert (result.exit_code, result.output) == (2, (
        f"Error: {spec}:4: searcher.name: not supported: 'custom': a custom searcher runs in Determined's "
        "master and asks it for trials; cade has no master to ask: use one of cade's searchers\n"))


@pytest.mark.parametrize("metric, direction, warned", [
    ("val_accuracy", "", True), ("bbox_mAP", "", True), ("f1", "", True),
    ("val_accuracy", "  smaller_is_better: true\n", False),
    ("val_accuracy", "  smaller_is_better: false\n", False),
    ("validation_loss", "", False), ("mape", "", False),
])
def test_a_larger_is_better_metric_left_to_the_default_warns(metric: str, direction: str,
                                                             warned: bool) -> None:
    spec = parse_spec(f"name: m\nentrypoint: python3 train.py\nsearcher:\n  name: single\n"
                      f"  metric: {metric}\n{direction}", "m.yaml")
    expected = (f"m.yaml:5: searcher.metric: {metric!r} reads as larger-is-better, but "
                "smaller_is_better is not given and defaults to true (as in Determined): the "
                "search will minimise it; set searcher.smaller_is_better: false if larger is better")
    assert [w for w in spec.warnings if "larger-is-better" in w] == ([expected] if warned else [])
