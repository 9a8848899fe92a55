"""A warm interpreter for one venv: it forks a clean child per run, so a run skips the interpreter start.

    BASE_PYTHON -I -S -u trainyard_warm.py VENV      (started by the agent, agent/warm-interpreter.ts)

Prefork task queues do this; what makes it safe here is what the parent holds before a fork: the
standard library and the harness (stdlib only), nothing of the venv. The parent is the base interpreter
the venv was made from, never the venv's bin/python (a requirement may have put its own file there, and
this parent runs as the agent's user, root), and it starts with -I -S: no PYTHON* variables, no site, so
not even the venv's site-packages (whose .pth files are code a requirement brings) are read here. Each
child adds the venv itself (site.main() with the venv's python as sys.executable, as a venv's python does
at its start), after it has become the run's process (own session, cgroup, uid). No user code and no CUDA
are ever imported before a fork.

Protocol, one JSON object per line. The agent writes requests on stdin:
  {"id": n, "op": "spare", "cgroup": DIR|null}
      fork a spare child: its own session and process group, already inside the cgroup DIR (moving a
      process into a cgroup can wait for an RCU grace period, 10-20 ms, so it is done ahead of the run)
  {"id": n, "spare": P|null, "cgroup": DIR|null, "argv": [harness args], "cwd": DIR, "io": SOCKET,
   "token": HEX, "user": {"name", "uid", "gid"}|null, "spool": FILE|null}
      run: in spare P, or in a child forked now (into cgroup DIR); with a spool file the child, once
      prepared, becomes the run's supervisor (trainyard_supervisor.py) and forks the run below it, which
      waits for "go"
(never the run's environment: it holds secrets, and whatever this parent reads stays in the memory
every later child starts with)
and reads on stdout:
  {"ready": true, "pid": P}                       once, when this interpreter is ready to fork
  {"id": n, "pid": P} | {"id": n, "error": MSG}   the spare, or the run's process, is set up (or not)
  {"exit": P, "code": C|null, "signal": NAME|null} a child ended (it is reaped here)
The child's stdout and stderr are two connections to the agent's socket SOCKET (each starts with
"TOKEN o" or "TOKEN e" and a newline), so its output goes to the agent directly, never through here. A
run's pid is reported once its process is set up: its own session and process group (so the agent's
kill of the group reaches it), inside its cgroup, output connected, privileges dropped (setresgid/
setresuid, the user's groups, no_new_privs), working directory the package's. It then waits: the agent
sends its environment, one JSON line on the stdout connection, as soon as the process is set up; the
child takes it and does what an interpreter does at its start (site.main(): the venv's site-packages and
their .pth files) and the harness's own set-up, all while the data is fetched; then it waits for the line "go", which the agent sends
when the run may start (its data local, Running acknowledged), and only then imports train.py. The
connection closed instead of either line: the run was called off, and the child ends without running
train.py. Stdin at EOF: no more
forks, spares end; this interpreter exits once the children it has are reaped.

Known difference from a fresh interpreter: children of one warm interpreter share its str hash seed.
"""
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import threading
import atexit
# Imported, not run: under -S, importing site reads no site-packages (each child calls site.main()).
import site

# -I leaves this script's folder off sys.path: the harness beside it is imported from there explicitly.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trainyard_harness  # noqa: E402
import trainyard_supervisor  # noqa: E402

# The venv this interpreter forks runs for; read by the children only, after they dropped privileges.
VENV = sys.argv[1] if len(sys.argv) > 1 else None

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
_libc = None


def no_new_privs():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def send(obj):
    try:
        os.write(1, (json.dumps(obj) + "\n").encode())
    except BrokenPipeError:
        # The agent is gone (killed, restarting): its runs go on under their supervisors, whose spool
        # files hold their exit statuses; this parent still reaps its children, then ends.
        pass


def connect_stream(path, token, which, fd):
    """Connects fd to the agent's socket, presenting the run's token."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(("%s %s\n" % (token, which)).encode())
    os.dup2(s.fileno(), fd)
    s.close()


_pending = b""


def read_line(fd=1):
    """The next line the agent sent on the stdout connection (fd 1, or a dup of it); None: it was closed."""
    global _pending
    while b"\n" not in _pending:
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        _pending += chunk
    line, _, _pending = _pending.partition(b"\n")
    return line


def await_start():
    """Waits for the run's environment on the stdout connection (fd 1); None: the run was called off."""
    line = read_line()
    return None if line is None else json.loads(line)


def await_go(fd=1):
    """Waits for the word that the run may start (its data local, Running acknowledged); False: called off."""
    return read_line(fd) == b"go"


def enter_own_group(cgroup):
    """In a new child: its own session and process group, default signals, and its cgroup."""
    os.setsid()
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if cgroup:
        # Before anything else can fork: nothing of the run is ever outside its cgroup.
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))


def become_run(req):
    """In the child, once its run is known: everything it must be before any of the run's code runs."""
    null = os.open(os.devnull, os.O_RDONLY)
    if null != 0:
        os.dup2(null, 0)
        os.close(null)
    connect_stream(req["io"], req["token"], "o", 1)
    connect_stream(req["io"], req["token"], "e", 2)
    user = req.get("user")
    if user:
        os.setgroups([])
        os.setresgid(user["gid"], user["gid"], user["gid"])
        os.setresuid(user["uid"], user["uid"], user["uid"])
        no_new_privs()
        # As after an exec: the run's user may inspect its own process (setuid left it undumpable).
        _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    os.chdir(req["cwd"])


def read_all(fd):
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def set_up(ready_w, step, *args):
    """Runs a set-up step; a failure is said on the ready pipe and ends the child (never run past)."""
    try:
        step(*args)
    except BaseException as e:  # noqa: any failure to set up is reported
        os.write(ready_w, ("could not set up the run's process: %s: %s" % (type(e).__name__, e)).encode()[:4000])
        os._exit(126)


def child_main(cgroup, req_r, ready_w):
    """A child's whole life; never returns. It is a spare (set up, in its cgroup) until its run comes."""
    code = 1
    try:
        set_up(ready_w, enter_own_group, cgroup)
        os.write(ready_w, b"S")
        raw = read_all(req_r)
        os.close(req_r)
        if not raw:
            os._exit(0)  # a spare that was not needed
        req = json.loads(raw)
        set_up(ready_w, become_run, req)
        os.write(ready_w, b"ok")
        os.close(ready_w)
        # The environment (secrets included) comes from the agent over the run's own connection, never
        # through this parent: what a parent held stays in the memory of every later child.
        env = await_start()
        if env is None:
            os._exit(0)
        os.environ.clear()
        os.environ.update(env)
        # What the venv's `python` without -S does at start, now as the run's uid and inside its cgroup:
        # site finds the venv from sys.executable (its pyvenv.cfg), makes it sys.prefix and adds its
        # site-packages and their .pth files; done while the run's data is still being made local. The
        # run's own code (train.py) waits for the word go.
        if VENV:
            sys.executable = os.path.join(VENV, "bin", "python")
        site.main()
        argv = list(req["argv"])
        sys.argv = [trainyard_harness.HARNESS_FILE] + argv
        try:
            prepared = trainyard_harness.prepare(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        else:
            if req.get("spool"):
                # This child becomes the run's supervisor (trainyard_supervisor.py): the run is forked once
                # more, its output goes to the spool file and its exit status too, so it outlives the agent.
                # Forked before the go, while the data is still being made local, so the fork and the
                # supervisor's set-up are off the path to train() (1.5-2.5 ms of it on this 2-core VM). The
                # run below it waits for the go on a copy of the stdout connection: its own fd 1 is the
                # supervisor's pipe by then. Called off, it exits 0 unstarted, and the supervisor with it.
                go_fd = os.dup(1)
                trainyard_supervisor.supervise(req["spool"], lambda: go_then_run(argv, prepared, go_fd), parent_closes=(go_fd,))
            if not await_go():
                os._exit(0)
            run_harness(argv, prepared)
    except BaseException:  # noqa: the harness reports user errors itself; this is its own failure
        code = own_failure()
    finally:
        exit_now(code)


def go_then_run(argv, prepared, go_fd):
    """Below a supervisor forked before the go: waits for it on `go_fd`, then runs; never returns."""
    try:
        go = await_go(go_fd)
        os.close(go_fd)
    except BaseException:  # noqa: as in child_main
        exit_now(own_failure())
    if not go:
        exit_now(0)
    run_harness(argv, prepared)


def run_harness(argv, prepared):
    """The run itself (in the child, or below its supervisor); never returns."""
    code = 1
    try:
        try:
            code = trainyard_harness.main(argv, prepared)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        # What the interpreter does at exit: wait for the run's threads, run its atexit functions.
        threading._shutdown()
        atexit._run_exitfuncs()
    except BaseException:  # noqa: as in child_main
        code = own_failure()
    finally:
        exit_now(code)


def own_failure():
    """A failure of the child's own (not the run's, which the harness reports): its traceback; exit code 1."""
    try:
        import traceback
        traceback.print_exc()
    except BaseException:
        pass
    return 1


def exit_now(code):
    """Ends the child: what it printed goes out, and no parent's cleanup runs."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)


def read_until(fd, want):
    """Reads what a child says on its ready pipe: `want`, or why it failed (its end, or an error text)."""
    got = b""
    while got != want:
        b = os.read(fd, 4096)
        if not b:
            break
        got += b
        if not want.startswith(got):
            got += read_all(fd)
            break
    return None if got == want else (got.decode(errors="replace") or "the run's process ended while being set up")


# Spare children: pid -> (request pipe, ready pipe).
spares = {}


def fork_child(cgroup, control_fds):
    """Forks a child and waits until it is set up as a spare. Returns (pid, request fd, ready fd, error)."""
    req_r, req_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in list(control_fds) + [req_w, ready_r] + [f for pair in spares.values() for f in pair]:
            try:
                os.close(fd)
            except OSError:
                pass
        signal.set_wakeup_fd(-1)
        child_main(cgroup, req_r, ready_w)
    os.close(req_r)
    os.close(ready_w)
    error = read_until(ready_r, b"S")
    if error is not None:
        os.close(req_w)
        os.close(ready_r)
    return pid, req_w, ready_r, error


def start_run(req, control_fds):
    """A run: in the spare named by req["spare"], or in a child forked now. Returns (pid, error)."""
    spare = req.get("spare")
    if spare:
        if spare not in spares:
            return None, "no spare child %s" % spare
        pid = spare
        req_w, ready_r = spares.pop(spare)
    else:
        pid, req_w, ready_r, error = fork_child(req.get("cgroup"), control_fds)
        if error is not None:
            return pid, error
    try:
        os.write(req_w, json.dumps(req).encode())
    finally:
        os.close(req_w)
    error = read_until(ready_r, b"ok")
    os.close(ready_r)
    return pid, error


children = set()


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        if os.WIFSIGNALED(status):
            try:
                name = signal.Signals(os.WTERMSIG(status)).name
            except ValueError:
                name = "SIG%d" % os.WTERMSIG(status)
            send({"exit": pid, "code": None, "signal": name})
        else:
            send({"exit": pid, "code": os.waitstatus_to_exitcode(status), "signal": None})


def warm_up():
    # What the harness imports lazily on its first use (argparse pulls in shutil, gettext and locale when it
    # builds a parser), and its parser: done once here, instead of in every child.
    trainyard_harness.parse_args(["--package-dir", ".", "--data-dir", ".", "--result-file", os.devnull])


def serve():
    warm_up()
    # The agent stops this by closing stdin; its signals to run groups never reach here (own session).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "in")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    pending = b""
    closing = False
    send({"ready": True, "pid": os.getpid()})
    while not (closing and not children):
        for key, _ in sel.select():
            if key.data == "wake":
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                reap()
                continue
            data = os.read(0, 65536)
            if not data:
                # The agent closed us (or is gone): no more forks, but the children running now are
                # still ours to reap, so their exit statuses reach the agent. Then this process ends.
                sel.unregister(0)
                closing = True
                # Spares not needed end at once (they read an empty request).
                for req_w, ready_r in spares.values():
                    os.close(req_w)
                    os.close(ready_r)
                spares.clear()
                break
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if not line.strip():
                    continue
                req = None
                try:
                    req = json.loads(line)
                    control = [0, wake_r, wake_w, sel.fileno()]
                    if req.get("op") == "spare":
                        pid, req_w, ready_r, error = fork_child(req.get("cgroup"), control)
                        if pid:
                            children.add(pid)
                        if error is None:
                            spares[pid] = (req_w, ready_r)
                    else:
                        pid, error = start_run(req, control)
                        if pid:
                            children.add(pid)
                    send({"id": req["id"], "pid": pid} if error is None else {"id": req["id"], "pid": pid, "error": error})
                except Exception as e:  # noqa: a bad request is answered, never fatal
                    send({"id": req.get("id") if isinstance(req, dict) else None, "error": "%s: %s" % (type(e).__name__, e)})
        reap()


if __name__ == "__main__":
    serve()
