#!/usr/bin/env bash
# Builds the example client: a venv with the pinned requirements.txt (grpcio, grpcio-tools), then the gRPC
# stubs generated from proto/trainyard.proto into gen/. The stubs are build output, never committed (gen/
# is gitignored), so they always match the proto of this checkout.
#
#   ./build.sh               the venv is .venv beside this script (rebuilt when requirements.txt changes)
#   VENV=DIR ./build.sh      the venv is DIR (test/e2e/python-client.test.ts keeps one per requirements
#                            hash under ~/.cache, so a test run reuses it)
#
# Then: .venv/bin/python trainyard_client.py --help
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
proto=$(cd "$here/../../../proto" && pwd)
venv=${VENV:-$here/.venv}
requirements=$here/requirements.txt

# A venv is current when it has a Python and was built from this very requirements.txt (build.sh keeps a
# copy inside; a venv made by hand has none and is taken as it is).
current() {
  [[ -x $venv/bin/python ]] && { [[ ! -f $venv/requirements.txt ]] || cmp -s "$requirements" "$venv/requirements.txt"; }
}
if ! current; then
  echo "build.sh: making the venv $venv from requirements.txt" >&2
  # Built aside and renamed into place, so that an interrupted build never leaves a half-installed venv
  # where the next run would take it as done. Only `bin/python -m` is used from it afterwards: the scripts
  # in bin/ keep the path they were built at.
  mkdir -p "$(dirname "$venv")"
  building=$venv.building-$$
  rm -rf "$building"
  python3 -m venv "$building"
  "$building/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$building/requirements.txt"
  if [[ -e $venv ]]; then rm -rf "$venv"; fi # stale: replaced
  # Fails only when a build running beside this one put its venv there first: that one is kept.
  mv -T "$building" "$venv" 2>/dev/null || rm -rf "$building"
fi

# Into a fresh folder, then renamed: a stub of an older proto never lingers beside the new ones.
stubs=$(mktemp -d "$here/gen.XXXXXX")
chmod 755 "$stubs" # mktemp makes it private; gen/ is an ordinary folder
trap 'rm -rf "$stubs"' EXIT
"$venv/bin/python" -m grpc_tools.protoc -I "$proto" --python_out="$stubs" --grpc_python_out="$stubs" "$proto/trainyard.proto"
rm -rf "$here/gen"
mv -T "$stubs" "$here/gen"
echo "build.sh: stubs generated from $proto/trainyard.proto into $here/gen" >&2
