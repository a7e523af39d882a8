"""Which process of a multi-process launch (torchrun, srun, Lightning's own launcher) is rank zero,
and who may ask questions: rank zero alone takes the lock, asks and reports; the others never ask,
and leave every refusal they share with it (same command line, same model file) to rank zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillgan.cli.common import DECISION_ENV, Launch
from distillgan.modelfile import ModelLock
from tests.cli.conftest import CliRun, assert_one_line_error

LAUNCH_VARIABLES = (
    "RANK",
    "GROUP_RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
)


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No launcher's variables but those a test sets."""
    for name in (*LAUNCH_VARIABLES, DECISION_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "num_nodes", "expected"),
    [
        ({}, 1, Launch(rank_zero=True, may_ask=True, decision=None)),
        ({}, 2, Launch(rank_zero=True, may_ask=False, decision=None)),  # Lightning's, several nodes
        ({"NODE_RANK": "1"}, 2, Launch(rank_zero=False, may_ask=False, decision=None)),
        # a process Lightning's launcher started on rank zero's behalf
        (
            {"LOCAL_RANK": "1", "WORLD_SIZE": "2", DECISION_ENV: "resume"},
            1,
            Launch(rank_zero=False, may_ask=False, decision="resume"),
        ),
        # torchrun, one node and several
        (
            {"RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0", "WORLD_SIZE": "2"},
            1,
            Launch(True, False, None),
        ),
        (
            {"RANK": "1", "LOCAL_RANK": "1", "GROUP_RANK": "0", "WORLD_SIZE": "2"},
            1,
            Launch(False, False, None),
        ),
        (
            {"RANK": "2", "LOCAL_RANK": "0", "GROUP_RANK": "1", "WORLD_SIZE": "4"},
            2,
            Launch(False, False, None),
        ),
        # srun: several tasks, or a batch script's single one
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, 1, Launch(True, False, None)),
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, 1, Launch(False, False, None)),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, 1, Launch(True, True, None)),
    ],
)
def test_every_launcher_says_which_process_is_rank_zero(
    launched: pytest.MonkeyPatch, env: dict[str, str], num_nodes: int, expected: Launch
) -> None:
    for name, value in env.items():
        launched.setenv(name, value)
    assert Launch.current(num_nodes) == expected


def test_under_srun_only_rank_zero_takes_the_lock_and_says_why_it_refuses(
    launched: pytest.MonkeyPatch, cli: CliRun, vae_model: Path, tiny_corpus: Path
) -> None:
    args = ["train", "vae", str(tiny_corpus), "--name", "tiny"]  # the model exists: no --overwrite
    launched.setenv("SLURM_NTASKS", "2")
    launched.setenv("SLURM_PROCID", "1")
    with ModelLock(vae_model, owner="rank zero"):
        other = cli(args)
    assert other.exit_code == 1 and other.stdout == other.stderr == ""  # no lock asked for, nothing said

    launched.setenv("SLURM_PROCID", "0")
    assert_one_line_error(cli(args), "already exists", "--overwrite")
