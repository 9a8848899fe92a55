#!/usr/bin/env python3
"""A small Trainyard client on grpcio: push a package and a dataset, submit a training run, follow its
logs, wait for its end and download its outputs.

The stubs are generated from proto/trainyard.proto into gen/ (not committed) by ./build.sh, which also
makes the venv (.venv) this runs in.

Every call carries `authorization: Bearer <token>` (a member token of the project, from
`trainyard tokens create --project P --role member`). Usage:

    TRAINYARD_TOKEN=tyt_... .venv/bin/python trainyard_client.py --scheduler 127.0.0.1:50051 \\
        --package ./my-package --package-name my-package --dataset ./data --dataset-name my-data --out ./out

Logs go to stderr as they come; the last line of stdout is a JSON summary of the run. Exit status: 0
when the run is Successful, 1 otherwise.
"""
import argparse
import io
import json
import os
import sys
import threading
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402
import trainyard_pb2 as pb  # noqa: E402
import trainyard_pb2_grpc as rpc  # noqa: E402

CHUNK = 1024 * 1024  # well under the scheduler's 16 MiB message limit
TERMINAL = {"Successful", "Failed", "Killed"}


def connect(address, token, ca_file=None):
    """A channel to the scheduler (TLS when a CA is given) and the call metadata with the token."""
    # A run's answer carries its lineage: two data manifests near their cap pass grpcio's 4 MiB default.
    options = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    if ca_file:
        with open(ca_file, "rb") as f:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=f.read()), options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    return rpc.TrainyardStub(channel), [("authorization", f"Bearer {token}")]


def zip_folder(folder):
    """The package folder as zip bytes, paths relative to it (train.py at the root)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for dirpath, _, files in os.walk(folder):
            for name in sorted(files):
                full = os.path.join(dirpath, name)
                z.write(full, os.path.relpath(full, folder).replace(os.sep, "/"))
    return buf.getvalue()


def push_package(stub, md, folder, name):
    """PushPackage: a header naming the package, then the zip in chunks. Returns the new PackageVersion."""
    data = zip_folder(folder)

    def chunks():
        yield pb.PushPackageChunk(header=pb.PushPackageHeader(name=name))
        for i in range(0, len(data), CHUNK):
            yield pb.PushPackageChunk(data=data[i:i + CHUNK])

    return stub.PushPackage(chunks(), metadata=md)


def push_dataset(stub, md, folder, name):
    """PushDataset: a header naming the dataset, then per file a FileStart (path, size) and its bytes."""
    def chunks():
        yield pb.PushDatasetChunk(header=pb.PushDatasetHeader(name=name))
        for dirpath, _, files in os.walk(folder):
            for fname in sorted(files):
                full = os.path.join(dirpath, fname)
                rel = os.path.relpath(full, folder).replace(os.sep, "/")
                yield pb.PushDatasetChunk(file=pb.FileStart(path=rel, size_bytes=os.path.getsize(full)))
                with open(full, "rb") as f:
                    while True:
                        block = f.read(CHUNK)
                        if not block:
                            break
                        yield pb.PushDatasetChunk(data=block)

    return stub.PushDataset(chunks(), metadata=md)


def follow_logs(stub, md, run_id, out):
    """StreamLogs with follow: every line as it comes, until the run ends. Returns how many lines came."""
    n = 0
    for line in stub.StreamLogs(pb.StreamLogsRequest(run_id=run_id, follow=True), metadata=md):
        out.write(f"[{line.attempt}:{line.seq} {line.stream}] {line.text}\n")
        out.flush()
        n += 1
    return n


def wait_for_end(stub, md, run_id):
    """WatchRun: the run each time it changes; returns it once its status is terminal."""
    for run in stub.WatchRun(pb.GetRunRequest(id=run_id), metadata=md):
        if run.status in TERMINAL:
            return run
    return stub.GetRun(pb.GetRunRequest(id=run_id), metadata=md)


def download_outputs(stub, md, run_id, dest):
    """DownloadOutputs: per file a FileStart (path under the run's output root), then its bytes."""
    files = []
    current = None
    dest_real = os.path.realpath(dest)
    try:
        for chunk in stub.DownloadOutputs(pb.DownloadOutputsRequest(run_id=run_id), metadata=md):
            if chunk.WhichOneof("part") == "file":
                if current:
                    current.close()
                path = os.path.realpath(os.path.join(dest, chunk.file.path))
                if not path.startswith(dest_real + os.sep):
                    raise ValueError(f"output path {chunk.file.path!r} leaves {dest}")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                current = open(path, "wb")
                files.append(chunk.file.path)
            elif current:
                current.write(chunk.data)
    finally:
        if current:
            current.close()
    return files


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scheduler", default=os.environ.get("TRAINYARD_SCHEDULER", "127.0.0.1:50051"))
    p.add_argument("--token", default=os.environ.get("TRAINYARD_TOKEN"), help="bearer token (default: $TRAINYARD_TOKEN)")
    p.add_argument("--tls-ca", default=os.environ.get("TRAINYARD_TLS_CA"), help="CA of a scheduler serving TLS")
    p.add_argument("--package", required=True, help="package folder (train.py at its root)")
    p.add_argument("--package-name", required=True)
    p.add_argument("--dataset", required=True, help="dataset folder")
    p.add_argument("--dataset-name", required=True)
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the run (repeatable)")
    p.add_argument("--out", required=True, help="where the outputs are downloaded")
    a = p.parse_args(argv)
    if not a.token:
        p.error("no token: pass --token or set TRAINYARD_TOKEN")

    stub, md = connect(a.scheduler, a.token, a.tls_ca)
    version = push_package(stub, md, a.package, a.package_name)
    print(f"pushed package {version.package} {version.version} ({version.size_bytes} bytes)", file=sys.stderr)
    dataset = push_dataset(stub, md, a.dataset, a.dataset_name)
    print(f"pushed dataset {dataset.name}: {dataset.file_count} files, {dataset.size_bytes} bytes", file=sys.stderr)
    env = dict(kv.split("=", 1) for kv in a.env)
    run = stub.SubmitRun(pb.SubmitRunRequest(package=version.package, version=version.version, dataset=dataset.name, env=env), metadata=md)
    print(f"submitted {run.id} ({run.status})", file=sys.stderr)

    # Logs on a thread of their own while this one watches the status: both streams end with the run.
    lines = {"n": 0}
    logs = threading.Thread(target=lambda: lines.update(n=follow_logs(stub, md, run.id, sys.stderr)), daemon=True)
    logs.start()
    ended = wait_for_end(stub, md, run.id)
    logs.join(timeout=60)
    files = download_outputs(stub, md, run.id, a.out) if ended.status == "Successful" else []
    print(json.dumps({
        "run_id": ended.id, "status": ended.status, "failure_reason": ended.failure_reason,
        "package": version.package, "version": version.version, "output_version": ended.output_version,
        "log_lines": lines["n"], "files": sorted(files),
    }))
    return 0 if ended.status == "Successful" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(1)
