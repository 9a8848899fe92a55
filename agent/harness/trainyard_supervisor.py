"""The run's supervisor: the small process between the agent and the run, so a run outlives its agent.

    BASE_PYTHON -I -S -u trainyard_supervisor.py SPOOL -- COMMAND ARGS...   (a spawned run, agent/attempt.ts)
    trainyard_supervisor.supervise(SPOOL, run_in_child)                      (a warm child, trainyard_warm.py)

It forks the run (the command, or the rest of a warm child's life) with its stdout and stderr on two pipes,
and writes what comes out of them to the attempt's spool file, one record a line, in the order it read them:
    o TEXT      a line of stdout        e TEXT     a line of stderr
    x JSON      the run's exit, {"code": C|null, "signal": NAME|null}: always the last record
The agent appends its own lines to the same file ("s TEXT"), opened O_APPEND like this one, one write() a
record, so the file is the attempt's log in one order: the agent ships it (agent/spool.ts) and a restarted
agent reads it again from where the scheduler had acknowledged it (agent/reattach.ts), with the same
numbering. Nothing here writes to the agent's sockets or pipes: killing the agent (kill -9, an upgrade)
breaks nothing the run writes to, and the run's exit status waits in the spool for whoever reads it.

It is in the run's session, process group and cgroup (forked after they were made), so every stop of the
agent's reaches the run: a SIGTERM to the group is ignored here (the run gets it and ends as it will; this
process then records how); SIGKILL and the cgroup's kill end both. It exits as the run did (its code, or
the same signal), once the run's first process has exited: not when the pipes close, so a background
process holding them cannot keep the attempt open (it is killed with the cgroup).
"""
import ctypes  # at the top: a warm interpreter loads it once, not each run's supervisor (1.6 ms)
import errno
import json
import os
import selectors
import signal
import sys

# A pathological line without newlines is cut so memory stays bounded (as agent/lines.ts does).
MAX_PENDING = 4 * 1024 * 1024
PR_SET_DUMPABLE = 4


def _not_dumpable():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except OSError:
        pass


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


class _Stream:
    def __init__(self, tag, fd, spool):
        self.tag = tag
        self.fd = fd
        self.spool = spool
        self.pending = b""

    def feed(self, data):
        self.pending += data
        out = []
        while True:
            nl = self.pending.find(b"\n")
            if nl < 0:
                break
            line = self.pending[:nl]
            if line.endswith(b"\r"):
                line = line[:-1]
            out.append(self.tag + line + b"\n")
            self.pending = self.pending[nl + 1:]
        while len(self.pending) > MAX_PENDING:
            out.append(self.tag + self.pending[:MAX_PENDING] + b"\n")
            self.pending = self.pending[MAX_PENDING:]
        if out:
            # One write per read: records of a read stay together, and never split across the agent's lines.
            _write_all(self.spool, b"".join(out))

    def end(self):
        if self.pending:
            _write_all(self.spool, self.tag + self.pending + b"\n")
            self.pending = b""


def supervise(spool_path, run_in_child, parent_closes=()):
    """Forks `run_in_child()` (which must never return) with its output piped here; never returns.
    `parent_closes`: descriptors the run keeps and this process closes once it has forked it."""
    spool = os.open(spool_path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    pid = os.fork()
    if pid == 0:
        os.close(spool)
        for fd in (out_r, err_r, wake_r, wake_w):
            os.close(fd)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        run_in_child()
        os._exit(1)
    os.close(out_w)
    os.close(err_w)
    for fd in parent_closes:
        os.close(fd)
    # Not the run's to inspect, though it may share the run's uid (a warm child dropped privileges first):
    # its /proc/PID/environ and memory are root's (the run's processes may read no ancestor's; README,
    # "Runs are contained").
    _not_dumpable()
    # Nothing of this process goes to the agent any more: its connections are the run's no longer.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    # The agent's stop reaches the whole group: the run decides what a SIGTERM does; this one records it.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    streams = {out_r: _Stream(b"o ", out_r, spool), err_r: _Stream(b"e ", err_r, spool)}
    sel = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    status = None

    def drain(fd):
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                data = b""
            if not data:
                return False
            streams[fd].feed(data)

    while status is None:
        if not streams:
            # Both pipes closed: only the exit is left to wait for.
            _, status = os.waitpid(pid, 0)
            break
        for key, _ in sel.select():
            fd = key.fd
            if fd == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                continue
            if not drain(fd):
                streams.pop(fd).end()
                sel.unregister(fd)
                os.close(fd)
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
    # The run's first process is gone: what it wrote is read to here; what is left belongs to processes
    # that outlived it (they die with the cgroup).
    for fd in list(streams):
        drain(fd)
        streams.pop(fd).end()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "SIG%d" % sig
        exit_rec = {"code": None, "signal": name}
    else:
        sig = None
        exit_rec = {"code": os.waitstatus_to_exitcode(status), "signal": None}
    _write_all(spool, b"x " + json.dumps(exit_rec).encode() + b"\n")
    os.close(spool)
    if sig is not None:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(exit_rec["code"] & 0xFF)


def _exec(argv):
    def run():
        try:
            os.execv(argv[0], argv)
        except OSError as e:
            os.write(2, ("trainyard supervisor: cannot run %s: %s\n" % (argv[0], e)).encode())
            os._exit(127)
    return run


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: trainyard_supervisor.py SPOOL -- COMMAND ARGS...\n")
        sys.exit(2)
    supervise(args[0], _exec(args[2:]))
