# The bytecode of a sealed venv (agent/venv.ts compileVenvBytecode), run by root with the base Python -I -S:
#   python -I -S trainyard_compile.py VENV/lib
# Compiling reads each source as text and runs none of it. Root must not be led by the venv's links: a
# build as a run uid may leave links to root-owned places, which the seal allows (agent/venv-seal.ts) and
# which are harmless to runs (they read as their own uid). Root compiling through them would write where
# the link points (a __pycache__ that is a link into the standard library's: bytecode root later loads)
# or publish what only root can read (a .py link into a folder the run cannot enter: its constants in a
# world-readable .pyc). So only plain files in plain folders are compiled, each into a __pycache__ that
# is a plain folder of their own (made here, not through a link), and nothing at all when VENV/lib is not
# a plain folder. The tree is root's and its build's processes are gone: nothing changes it meanwhile.
import os
import py_compile
import stat
import struct
import sys
from importlib.util import MAGIC_NUMBER, cache_from_source


def sources(top):
    """Every plain .py file under `top`, never through a link, never in a __pycache__."""
    found = []
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.is_symlink():
                continue
            if e.is_dir(follow_symlinks=False):
                if e.name != "__pycache__":
                    stack.append(e.path)
            elif e.name.endswith(".py") and e.is_file(follow_symlinks=False):
                found.append(e.path)
    return found


def up_to_date(src, cfile):
    """Whether `cfile` is a plain file already holding `src`'s bytecode (as pip leaves it): not rewritten."""
    try:
        cst = os.lstat(cfile)
        if not stat.S_ISREG(cst.st_mode):
            return False
        sst = os.lstat(src)
        with open(cfile, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return head == MAGIC_NUMBER + b"\0\0\0\0" + struct.pack("<II", int(sst.st_mtime) & 0xFFFFFFFF, sst.st_size & 0xFFFFFFFF)


def compile_one(src):
    """Compiles `src` into its own __pycache__ (a plain folder); False when it cannot or must not."""
    cfile = cache_from_source(src)
    cache = os.path.dirname(cfile)
    try:
        st = os.lstat(cache)
    except FileNotFoundError:
        try:
            os.mkdir(cache, 0o755)
            st = os.lstat(cache)
        except OSError:
            return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if up_to_date(src, cfile):
        return True
    try:
        py_compile.compile(src, cfile=cfile, doraise=True)
        return True
    except Exception:  # noqa: a module that does not compile is compiled (and fails) at its import, as before
        return False


def main():
    top = sys.argv[1]
    if not stat.S_ISDIR(os.lstat(top).st_mode):
        sys.exit("%s is not a plain folder: nothing compiled" % top)
    os.umask(0o022)
    # One process, at the lowest priority: it runs beside the venv's first run, and a stop (SIGTERM to
    # this process) ends all of it.
    os.nice(19)
    files = sources(top)
    done = sum(map(compile_one, files))
    print("compiled %d of %d files" % (done, len(files)))


if __name__ == "__main__":
    main()
