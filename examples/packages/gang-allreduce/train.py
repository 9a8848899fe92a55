"""A DDP-style multi-agent package (README, "Multi-agent runs") with the Python standard library alone.

Every rank reads torchrun's environment (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, ...), meets the others
at MASTER_ADDR:MASTER_PORT (rank 0 listens, the others connect, as torch.distributed's TCP store does),
and they all-reduce one number: each rank contributes RANK + 1, rank 0 sums and sends the sum back. Every
rank writes what it saw in its artifacts; only global rank 0's save() runs (Trainyard calls it on rank 0
alone), so the gang makes one version, holding sum.txt. Try it on two agents with

    trainyard package push examples/packages/gang-allreduce --name gang-allreduce
    trainyard run train --package gang-allreduce --dataset iris --agents 2 --procs-per-agent 2 --wait

HOLD_SECONDS (env) keeps every rank in train() that long after the all-reduce (a test kills one meanwhile);
HOLD_FILE, when set, is a file whose presence ends the hold early.
"""
import json
import os
import socket
import time

ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
       "NODE_RANK", "NNODES", "GROUP_RANK", "TORCHELASTIC_RUN_ID", "CUDA_VISIBLE_DEVICES")


def recv_line(conn):
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1024)
        if not chunk:
            raise ConnectionError("a rank left before the all-reduce finished")
        data += chunk
    return data.decode().strip()


def all_reduce_sum(value, rank, world, addr, port, timeout=120):
    """Every rank's `value` summed, on every rank: a star through rank 0, over TCP."""
    if world == 1:
        return value
    if rank == 0:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.time() + timeout
        while True:
            try:
                srv.bind((addr, port))
                break
            except OSError:
                # A previous attempt's rank 0 may still be stopping on this port.
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        srv.listen(world)
        srv.settimeout(timeout)
        peers = []
        total = value
        while len(peers) < world - 1:
            conn, _ = srv.accept()
            conn.settimeout(timeout)
            total += float(recv_line(conn))
            peers.append(conn)
        for conn in peers:
            conn.sendall(b"%r\n" % total)
        return total, peers, srv
    deadline = time.time() + timeout
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            conn.settimeout(timeout)
            conn.sendall(b"%r\n" % float(value))
            return float(recv_line(conn)), [conn], None
        except OSError:
            # Rank 0 may not listen yet (torchrun's workers retry the store the same way), or a previous
            # attempt's rank 0, still being stopped, took the connection and died: try again.
            if time.time() > deadline:
                raise
            time.sleep(0.2)


class Main:
    def __init__(self):
        self.sum = None

    def train(self, training_directory):
        env = {k: os.environ.get(k, "") for k in ENV}
        print("env " + json.dumps(env, sort_keys=True), flush=True)
        rank, world = int(env["RANK"] or 0), int(env["WORLD_SIZE"] or 1)
        total, conns, srv = all_reduce_sum(float(rank + 1), rank, world, env["MASTER_ADDR"], int(env["MASTER_PORT"] or 0))
        self.sum = total
        print("all-reduce sum %s" % total, flush=True)
        print("pid %d" % os.getpid(), flush=True)
        art = os.environ.get("artifacts_directory", "artifacts")
        os.makedirs(art, exist_ok=True)
        with open(os.path.join(art, "rank-%d.json" % rank), "w") as f:
            json.dump({"rank": rank, "sum": total, "env": env}, f)
        # Held together like a training's steps: a rank that dies now is noticed by the others at once.
        end = time.time() + float(os.environ.get("HOLD_SECONDS", "0"))
        hold_file = os.environ.get("HOLD_FILE", "")
        while time.time() < end and not (hold_file and os.path.exists(hold_file)):
            time.sleep(0.2)
        # A last barrier: every rank says it is done, so none ends while another still works.
        if world > 1:
            if rank == 0:
                for c in conns:
                    recv_line(c)
                for c in conns:
                    c.sendall(b"done\n")
            else:
                conns[0].sendall(b"done\n")
                recv_line(conns[0])
        for c in conns:
            c.close()
        if srv:
            srv.close()

    def save(self):
        with open("sum.txt", "w") as f:
            f.write(repr(self.sum))
