#!/bin/sh
# deploy/build.sh OUT — build mdtap exactly as the container image ships it:
# static (CGO_ENABLED=0), paths trimmed, symbols stripped, the commit stamped
# into `mdtap version`. deploy/Dockerfile runs this script, and CI runs it
# without Docker, so the image and CI build with the same flags.
#
# The commit is $MDTAP_COMMIT, else the checkout's HEAD (a Docker build
# context has no .git, so the Dockerfile passes it as a build argument).
set -eu
out=${1:?usage: deploy/build.sh OUT}
case $out in
/*) ;;
*) out=$PWD/$out ;;
esac
cd "$(dirname "$0")/.."
commit=${MDTAP_COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
CGO_ENABLED=0 exec go build -trimpath -ldflags "-s -w -X main.commit=$commit" -o "$out" ./cmd/mdtap
