"""Checkpoints for a Trainyard run (README, "Checkpoints"). Standard library only.

    import trainyard_checkpoint as ckpt

    d = ckpt.directory()          # checkpoint_directory: empty on a fresh start
    if ckpt.resumed_from():       # {"run", "attempt", "time", "size", "files"} of what is in it, or None
        state = load(os.path.join(d, "state.json"))
    ...
    save(os.path.join(d, "state.json"))
    ckpt.commit()                 # returns once the agent has uploaded it as a complete checkpoint
    ckpt.progress()               # alive (for --stall-timeout) without a log line or a checkpoint

The agent also uploads the folder every --checkpoint-interval and once more when it stops the run
(SIGTERM: kill, drain, stall, preemption) within the kill grace. A later attempt of the run, or a run
submitted with --resume-from, starts with the latest complete checkpoint already in the folder.
"""
import json
import os
import time

COMMIT_MARKER = ".trainyard-commit"
PROGRESS_MARKER = ".trainyard-progress"


def directory():
    """checkpoint_directory: where the run writes what it wants back after a restart."""
    return os.environ["checkpoint_directory"]


def resumed_from():
    """What the folder was filled from (a dict), or None on a fresh start."""
    raw = os.environ.get("resumed_from") or ""
    return json.loads(raw) if raw else None


def _mark(name):
    d = os.environ.get("checkpoint_directory")
    if not d:
        return None
    path = os.path.join(d, name)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(repr(time.time()))
    os.replace(tmp, path)
    return path


def commit(timeout=3600.0):
    """Asks the agent to upload the folder now; True once it is done (its log line says whether it was
    committed), False after `timeout` seconds or outside Trainyard. Write nothing in the folder meanwhile."""
    path = _mark(COMMIT_MARKER)
    if path is None:
        return False
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def progress():
    """Tells the agent the run is alive (--stall-timeout), without a log line or a checkpoint. In a gang
    (one silent rank stalls it) the mark names this process's rank, so it counts for this rank alone."""
    rank = os.environ.get("RANK", "") if os.environ.get("TRAINYARD_GANG") == "1" else ""
    _mark(PROGRESS_MARKER + ("." + rank if rank.isdigit() else ""))
