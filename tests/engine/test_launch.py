"""Launching a job on N processes: the command, the refusals, the room a job takes, and the
rank the launcher blames (no processes started here; tests/engine/test_multiprocess.py runs
real ranks)."""

import sys

import pytest

from engine import hardware, launch
from engine.api import Studio
from engine.errors import SpecError
from engine.jobs import JobManager
from engine.methods.simclr import SimCLR
from storage.db import Store
from tests.conftest import TINY

# What torch.distributed.run 2.14 printed when rank 1 was killed (kill -9) while rank 0 waited
# in an all_reduce, then when rank 1 raised (both logs trimmed to their last block).
KILLED_LOG = """
[1]:
  time      : 2026-12-06_02:06:48
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 1182)  (SIGTERM)
  error_file: /tmp/torchelastic_bxo4mx_d/none_kcaa2x0q/attempt_0/0/error.json
  traceback : Traceback (most recent call last):
    File "/tmp/a1exp/w.py", line 17, in main
      dist.all_reduce(t)
  RuntimeError: [pair.cc:561] Connection closed by peer [127.0.0.1]:42390.

------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-06_02:06:48
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 1183)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 1183
============================================================
"""
RAISED_LOG = """
Root Cause (first observed failure):
[0]:
  time      : 2026-12-06_02:06:59
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 1640)
  error_file: /tmp/torchelastic_rb5d2p63/none_zl5nuzdo/attempt_0/1/error.json
  traceback : Traceback (most recent call last):
    File "/tmp/a1exp/w.py", line 13, in main
      raise RuntimeError("boom on rank 1")
  RuntimeError: boom on rank 1

============================================================
"""


def test_one_process_runs_the_worker_itself():
    command = launch.worker_command(7, "/h", 1)
    assert command == [sys.executable, "-m", "engine.worker", "7", "--home", "/h"]


def test_n_processes_go_through_accelerate_launch():
    command = launch.worker_command(7, "/h", 2, port=29555)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    flags = " ".join(command[3:])
    assert "--multi_gpu --num_processes 2 --num_machines 1" in flags
    assert "--mixed_precision no --dynamo_backend no --main_process_port 29555" in flags
    assert command[-5:] == ["-m", "engine.worker", "7", "--home", "/h"]


def test_worker_env_cpu_and_cuda():
    cpu = launch.worker_env(2, None, base={})
    assert cpu["ACCELERATE_USE_CPU"] == "1" and int(cpu["OMP_NUM_THREADS"]) >= 1
    assert "CUDA_VISIBLE_DEVICES" not in cpu
    gpu = launch.worker_env(2, [1, 3], base={})
    assert gpu["CUDA_VISIBLE_DEVICES"] == "1,3" and "ACCELERATE_USE_CPU" not in gpu
    assert "ACCELERATE_USE_CPU" not in launch.worker_env(1, None, base={})


def test_devices_are_given_out_once():
    assert launch.pick_devices(set(), 1, 4) == [0]
    assert launch.pick_devices({0, 2}, 2, 4) == [1, 3]
    assert launch.pick_devices({0, 1, 2}, 2, 4) is None


def test_rank_failure_names_the_rank_that_failed_first():
    assert launch.rank_failure(KILLED_LOG, 2) == (
        1,
        "rank 1 of 2 was killed (SIGKILL); the other ranks were stopped",
    )
    assert launch.rank_failure(RAISED_LOG, 2) == (
        1,
        "rank 1 of 2 failed: RuntimeError: boom on rank 1",
    )
    assert launch.rank_failure("Traceback ...\nValueError: x\n", 2) is None


def spec(**params):
    return {"method": "simclr", "dataset": "digits", "params": dict(TINY, **params)}


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "home")
    yield s
    s.shutdown()


def test_processes_refusals_name_the_numbers(studio, monkeypatch):
    most = hardware.detect()["max_processes"]
    with pytest.raises(SpecError, match=rf"processes {most + 1} is more than .* at most {most}"):
        studio.validate(spec(processes=most + 1))
    found = hardware.detect()
    monkeypatch.setattr(hardware, "detect", lambda: dict(found, max_processes=4))
    with pytest.raises(SpecError, match=r"batch_size 30 does not divide among 4 .* 28 or 32"):
        studio.validate(spec(processes=4, batch_size=30))
    monkeypatch.setattr(SimCLR, "multi_process", False, raising=False)
    with pytest.raises(
        SpecError, match=r"simclr cannot train on several processes .* set processes to 1"
    ):
        studio.validate(spec(processes=2))
    with pytest.raises(SpecError, match="processes must be at least 1"):
        studio.validate(spec(processes=0))
    assert studio.validate(spec(processes=1))[1].processes == 1


def test_cli_processes_flag_is_refused_past_the_machine(tmp_path, monkeypatch, capsys):
    from engine.__main__ import main

    found = hardware.detect()
    monkeypatch.setattr(hardware, "detect", lambda: dict(found, max_processes=1))
    args = ["train", "--home", str(tmp_path), "--method", "simclr", "--dataset", "digits"]
    assert main([*args, "--processes", "2"]) == 2
    assert "processes 2 is more than this machine runs at once" in capsys.readouterr().err


def test_a_job_needs_room_for_its_processes(tmp_path):
    """Two 1-process jobs fit on 2 cores; a 2-process job waits for both, and nothing starts
    beside it; a job alone always starts."""
    store = Store.open(tmp_path / "jobs.db")

    def job(processes):
        return store.create_job(
            method="simclr",
            dataset="digits",
            spec={},
            config={"processes": processes},
            status="queued",
        )

    one, two, wide, after = job(1), job(1), job(2), job(1)
    assert store.claim_slot(one, 4, 2)[0] and store.claim_slot(two, 4, 2)[0]
    assert store.claim_slot(wide, 4, 2) == (False, [one, two])
    store.update_job(one, status="completed")
    assert store.claim_slot(wide, 4, 2) == (False, [two])
    store.update_job(two, status="completed")
    assert store.claim_slot(wide, 4, 1)[0]  # alone it starts, even past the room
    assert store.claim_slot(after, 4, 2) == (False, [wide])


def test_manager_waits_for_room_in_queue_order(tmp_path, monkeypatch):
    studio = Studio(tmp_path / "home")
    spawned = []
    monkeypatch.setattr(JobManager, "_spawn", lambda self, job: spawned.append(job.id))
    first = studio.submit(spec())
    wide = studio.submit(spec())
    third = studio.submit(spec())
    manager = JobManager(studio.home, max_running=3)
    manager.capacity = 2
    studio.store.update_job(wide, config=dict(studio.job(wide)["config"], processes=2))
    manager.tick()
    assert spawned == [first]  # the 2-process job waits for the core the first one holds
    assert studio.job(third)["status"] == "queued"  # and the queue keeps its order
    studio.store.update_job(first, status="completed")
    manager.tick()
    assert spawned == [first, wide]


def test_record_exit_names_the_rank_the_launcher_blamed(tmp_path):
    """Rank 0 leaves a crash to the launcher's exit (its own error in the row): the job fails
    with the first failed rank's error, or rank 0's own when rank 0 failed first."""
    from engine.home import Home
    from engine.jobs import record_exit

    home = Home.resolve(tmp_path / "home")
    store = Store.open(home.db_path)

    def crashed(log: str, own_error: str | None) -> dict:
        job_id = store.create_job(
            method="simclr", dataset="digits", spec={}, config={"processes": 2}, status="running"
        )
        store.update_job(job_id, error=own_error)
        home.run_dir(job_id).mkdir(parents=True)
        (home.run_dir(job_id) / "worker.log").write_text(log)
        record_exit(store, home, job_id, 1)
        return store.get_job(job_id)

    job = crashed(KILLED_LOG, "RuntimeError: Connection closed by peer")
    assert job.status == "failed"
    assert job.error == "rank 1 of 2 was killed (SIGKILL); the other ranks were stopped"
    rank0_first = RAISED_LOG.replace(
        "rank      : 1 (local_rank: 1)", "rank      : 0 (local_rank: 0)"
    )
    job = crashed(rank0_first, "ValueError: rank 0's own words")
    assert job.status == "failed" and job.error == "ValueError: rank 0's own words"
    job = crashed("no report at all\n", None)
    assert job.status == "failed" and "exited with code 1: no report at all" in job.error
    # A resumed job's log keeps the earlier attempt's report: only the latest start counts.
    job = crashed(f"{KILLED_LOG}{launch.ATTEMPT_MARK}\nValueError: later\n", None)
    assert job.error == "the worker exited with code 1: ValueError: later"


def test_recovery_of_an_unwatched_multi_process_job_names_the_rank(tmp_path):
    """The web process restarted while a 2-process job ran; its launcher ended since."""
    from engine.home import Home
    from engine.jobs import recover_interrupted

    home = Home.resolve(tmp_path / "home")
    store = Store.open(home.db_path)
    job_id = store.create_job(
        method="simclr", dataset="digits", spec={}, config={"processes": 2}, status="running"
    )
    store.update_job(job_id, pid=None, run_dir=str(home.run_dir(job_id)))
    home.run_dir(job_id).mkdir(parents=True)
    (home.run_dir(job_id) / "worker.log").write_text(f"{launch.ATTEMPT_MARK}\n{RAISED_LOG}")
    assert recover_interrupted(store) == [job_id]
    job = store.get_job(job_id)
    assert job.status == "failed" and job.error.startswith("rank 1 of 2 failed: RuntimeError")


def test_with_gpus_each_job_gets_its_own_devices(tmp_path, monkeypatch):
    """With 2 GPUs: PRETEXT_MAX_JOBS defaults to 2; a running job holds the devices its
    process was given (device 0 here: a job started without any sees them from 0); the next
    gets device 1; a 2-GPU job waits (back in the queue) until both are free."""
    from engine import jobs

    monkeypatch.setattr(jobs, "_gpus", lambda: [{"index": 0}, {"index": 1}])
    monkeypatch.delenv("PRETEXT_MAX_JOBS", raising=False)
    assert jobs.max_jobs() == 2
    home = jobs.Home.resolve(tmp_path / "home")
    store = Store.open(home.db_path)

    def job(processes, status):
        job_id = store.create_job(
            method="simclr", dataset="digits", spec={}, config={"processes": processes}
        )
        store.update_job(job_id, status=status, host=jobs.socket.gethostname())
        return store.get_job(job_id)

    job(1, "running")
    assert jobs.job_devices(store, job(1, "queued")) == [1]
    assert jobs.job_devices(store, job(2, "queued")) is None
    started = []
    monkeypatch.setattr(jobs.launch, "start", lambda *args: started.append(args))
    manager = JobManager(home, max_running=2)
    wide = job(2, "running")  # as claimed: the manager finds no free pair of devices
    manager._spawn(wide)
    assert started == [] and store.get_job(wide.id).status == "queued"
    too_wide = job(3, "running")  # more than the machine has: it could never start
    manager._spawn(too_wide)
    assert started == [] and store.get_job(too_wide.id).status == "failed"
    assert "3 processes, more than the 2 GPUs here" in store.get_job(too_wide.id).error


def test_resume_refuses_processes_the_machine_no_longer_has(studio):
    job_id = studio.submit(spec())
    most = hardware.detect()["max_processes"]
    config = dict(studio.job(job_id)["config"], processes=most + 1, batch_size=16 * (most + 1))
    studio.store.update_job(job_id, status="cancelled", config=config)
    with pytest.raises(SpecError, match=rf"processes {most + 1} is more than"):
        studio.resume(job_id)
    with pytest.raises(SpecError, match=rf"processes {most + 1} is more than"):
        studio.resume_foreground(job_id)
    assert studio.job(job_id)["status"] == "cancelled"
