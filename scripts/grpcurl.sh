#!/usr/bin/env bash
# Builds grpcurl once (there is no Debian package) into ~/.cache/trainyard/bin, as services.sh does for
# MinIO, so the tests of the scheduler's gRPC health and reflection (test/e2e/health.test.ts) can call it as
# an operator would. Never rebuilds an existing binary; the build goes to a temporary folder and is renamed
# into place, so nobody sees a half-written binary. Prints the binary's path.
#
#   bash scripts/grpcurl.sh        build if missing (about a minute the first time), print the path
set -euo pipefail

GRPCURL_BIN=${TRAINYARD_GRPCURL_BIN:-$HOME/.cache/trainyard/bin/grpcurl}
GRPCURL_MODULE=github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4

die() { printf 'grpcurl.sh: error: %s\n' "$*" >&2; exit 1; }

if [[ ! -x $GRPCURL_BIN ]]; then
  command -v go >/dev/null || die "grpcurl is not at $GRPCURL_BIN and there is no Go to build it with"
  bindir=$(dirname "$GRPCURL_BIN")
  mkdir -p "$bindir"
  tmp=$(mktemp -d "$bindir/.build-grpcurl.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log=$tmp/build.log
  printf 'grpcurl.sh: building %s into %s (once)\n' "$GRPCURL_MODULE" "$GRPCURL_BIN" >&2
  if ! CGO_ENABLED=0 GOBIN=$tmp go install "$GRPCURL_MODULE" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "could not build $GRPCURL_MODULE"
  fi
  mv "$tmp/grpcurl" "$GRPCURL_BIN"
fi
printf '%s\n' "$GRPCURL_BIN"
