"""A multi-agent (gang) run's processes on one member (scheduler/placement/gang.ts, agent/gang-env.ts).

The agent starts one harness per member with torchrun's environment for the member (MASTER_ADDR,
MASTER_PORT, NNODES, NODE_RANK, GROUP_RANK, LOCAL_WORLD_SIZE, WORLD_SIZE, TORCHELASTIC_RUN_ID) and the
member's GPUs in CUDA_VISIBLE_DEVICES. Like torchrun's agent, that harness is local rank 0 and starts the
member's other LOCAL_WORLD_SIZE - 1 processes, each a harness of its own with RANK, LOCAL_RANK and its share
of the GPUs (one UUID each with one GPU per process). Every line a rank prints starts with "[rank R] ".
Only global rank 0 calls save() (and evaluate(), for a full pipeline), so a gang makes one version.
Standard library only.
"""
import atexit
import os
import subprocess
import sys
import threading

GANG = "TRAINYARD_GANG"
CHILD = "TRAINYARD_GANG_LOCAL_CHILD"


def active():
    return os.environ.get(GANG) == "1"


def rank():
    return int(os.environ.get("RANK", "0"))


class _Prefixed:
    """A text stream whose every line starts with "[rank R] " (the rank on each log line). The member's
    local ranks share one output: each line is written whole, in one write (print() writes a line's text
    and its newline apart), so two ranks' lines never interleave; a line without its newline yet waits
    for it, or for the process's exit."""

    def __init__(self, stream, prefix):
        self._stream = stream
        self._prefix = prefix
        self._pending = ""

    def write(self, text):
        if not text:
            return 0
        self._pending += text
        if "\n" in self._pending:
            done, _, self._pending = self._pending.rpartition("\n")
            self._stream.write("".join(self._prefix + line + "\n" for line in done.split("\n")))
        return len(text)

    def flush(self):
        self._stream.flush()

    def finish(self):
        """The process leaves: a last line without its newline still goes out."""
        if self._pending:
            rest, self._pending = self._pending, ""
            self._stream.write(self._prefix + rest + "\n")
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def set_up(argv_of_child):
    """Gives this process its rank's environment and starts the member's other local ranks (the first
    harness of a member only). Returns the children started, for wait_local_ranks()."""
    node_rank = int(os.environ["NODE_RANK"])
    procs = int(os.environ["LOCAL_WORLD_SIZE"])
    child = os.environ.get(CHILD) == "1"
    local = 0
    gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
    children = []
    if not child:
        for k in range(1, procs):
            env = dict(os.environ)
            env.update(_rank_env(node_rank, procs, k, gpus))
            env[CHILD] = "1"
            children.append(subprocess.Popen([sys.executable, "-u"] + argv_of_child(k), env=env))
    if not child:
        # A child was given its rank and GPUs by the member's first harness.
        os.environ.update(_rank_env(node_rank, procs, local, gpus))
    prefix = "[rank %s] " % os.environ["RANK"]
    sys.stdout = _Prefixed(sys.stdout, prefix)
    sys.stderr = _Prefixed(sys.stderr, prefix)
    atexit.register(sys.stderr.finish)
    atexit.register(sys.stdout.finish)
    return children


def _rank_env(node_rank, procs, local, gpus):
    env = {"LOCAL_RANK": str(local), "RANK": str(node_rank * procs + local)}
    if gpus:
        share = len(gpus) // procs
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[local * share:(local + 1) * share])
    return env


def wait_local_ranks(children):
    """Waits for the member's other local ranks; the first that failed, as a message, or None."""
    failed = None
    for k, c in enumerate(children, start=1):
        code = c.wait()
        if code != 0 and failed is None:
            failed = "local rank %d exited with %s" % (k, ("signal %d" % -code) if code < 0 else ("code %d" % code))
    return failed


def stop_local_ranks(children):
    """This rank failed: the others are stopped (a gang stops whole)."""
    for c in children:
        if c.poll() is None:
            c.terminate()
    timer = threading.Timer(10, lambda: [c.kill() for c in children if c.poll() is None])
    timer.daemon = True
    timer.start()
    for c in children:
        c.wait()
    timer.cancel()
