"""Metrics from a Trainyard run: ``import trainyard``.

    trainyard.log(step=10, loss=0.31, acc=0.88)   # any number of named scalars; step is optional
    trainyard.summary(best_acc=0.93)               # the run's summary (the last value per key wins)

A call never blocks training: it appends to a list in this process; a background thread writes the list to
a file the agent reads (TRAINYARD_METRICS_FILE, made by the agent for this attempt) about twice a second,
and once more when the process exits. The agent ships the points to the scheduler beside the run's log.

Steps: per name, a step must be above that name's previous one in this process (ValueError otherwise); a
call without a step takes "the next one". Across attempts, the scheduler keeps one step axis per name: a
point whose step is already stored (a resumed attempt logging again from its checkpoint) is not stored
again, and a point without a step continues after the last stored one. Outside a Trainyard run (no
TRAINYARD_METRICS_FILE) the calls are accepted and do nothing, so train.py runs anywhere.

Standard library only: it is on every run's path, whatever the package's venv holds.
"""
import atexit
import json
import math
import numbers
import os
import sys
import threading
import time

__all__ = ["log", "summary", "flush"]

_FLUSH_SECONDS = 0.5
# Points kept in memory when the file cannot take them (the disk is full): beyond this, new points are
# dropped and counted, so a run never grows without bound because of its metrics.
_MAX_PENDING = 1_000_000

_lock = threading.Lock()
# Held from taking the buffer to the end of its write: two flushes (the thread's, the harness's) never
# write out of order.
_write_lock = threading.Lock()
_pending = []
_last_step = {}
_dropped = 0
_writer = None
_pid = None


def _value(name, v):
    # The common cases first, without the numbers ABCs (slow): log() is in training's inner loop.
    t = type(v)
    if t is float:
        return v if v - v == 0 else _special(v)
    if t is int:
        return float(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError("trainyard: %s must be a number, got %s" % (name, type(v).__name__))
    return _special(float(v))


def _special(v):
    if v - v == 0:
        return v
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


_good_names = set()


def _check_name(name):
    # Checked once per name: log() is called in training's inner loop.
    if name in _good_names:
        return
    if not name or len(name) > 200 or not all((c.isascii() and c.isalnum()) or c in "_.-/:@" for c in name) or name.startswith("sys/"):
        raise ValueError("trainyard: %r is not a metric name (ASCII letters, digits, _ . - / : @; at most 200; not sys/...)" % (name,))
    _good_names.add(name)


def _start():
    # Started on first use, and again in a forked child (a thread does not survive fork).
    global _writer, _pid
    if _pid == os.getpid():
        return
    _pid = os.getpid()
    _writer = threading.Thread(target=_loop, name="trainyard-metrics", daemon=True)
    _writer.start()


def log(step=None, **scalars):
    """Records named scalars at `step` (an int >= 0, above the name's previous step; None: the next)."""
    if step is not None and not (type(step) is int and step >= 0) and (isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0):
        raise ValueError("trainyard: step must be a non-negative integer, got %r" % (step,))
    now = time.time()
    points = []
    for name, v in scalars.items():
        _check_name(name)
        points.append([name, None if step is None else int(step), _value(name, v), now])
    global _dropped
    with _lock:
        if step is not None:
            for name in scalars:
                prev = _last_step.get(name)
                if prev is not None and step <= prev:
                    raise ValueError("trainyard: step %d of %s is not above its previous step %d" % (step, name, prev))
            for name in scalars:
                _last_step[name] = int(step)
        if len(_pending) + len(points) > _MAX_PENDING:
            _dropped += len(points)
            return
        _pending.extend(points)
    _start()


def summary(**values):
    """Sets the run's summary values (shown by `trainyard run get` and `run diff`)."""
    now = time.time()
    points = []
    for name, v in values.items():
        _check_name(name)
        points.append(["=" + name, None, _value(name, v), now])
    with _lock:
        _pending.extend(points)
    _start()


def flush():
    """Writes what is buffered to the agent's file now (the harness calls it when train.py is done)."""
    with _write_lock:
        _flush_locked()


def _flush_locked():
    global _pending, _dropped
    path = os.environ.get("TRAINYARD_METRICS_FILE")
    with _lock:
        batch, _pending = _pending, []
        dropped, _dropped = _dropped, 0
    if dropped:
        print("[trainyard] %d metric points dropped: more than %d waited to be written" % (dropped, _MAX_PENDING), file=sys.stderr)
    if not batch or not path:
        return
    # One JSON line per flush: the agent reads whole lines only, so a line is taken once it is complete.
    data = (json.dumps(batch, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as e:
        # Kept ahead of newer points for the next try, up to the bound (the newest of them).
        with _lock:
            room = max(0, _MAX_PENDING - len(_pending))
            keep = batch[max(0, len(batch) - room):] if room else []
            _dropped += len(batch) - len(keep)
            _pending[:0] = keep
        print("[trainyard] could not write metrics (%s); keeping them for the next try" % e, file=sys.stderr)


def _loop():
    me = os.getpid()
    while _pid == me:
        time.sleep(_FLUSH_SECONDS)
        try:
            flush()
        except Exception as e:  # noqa: the writer must not die silently and leave points behind
            print("[trainyard] metrics writer: %s" % e, file=sys.stderr)


atexit.register(flush)
