#!/usr/bin/env bash
# Print the base image name: ORTHANC_REMOTE_IMAGE when set, else a local tag
# derived from the build script, so a changed recipe means a new image.
set -euo pipefail
if [ -n "${ORTHANC_REMOTE_IMAGE:-}" ]; then
  echo "$ORTHANC_REMOTE_IMAGE"
  exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
suite=${ORTHANC_REMOTE_SUITE:-bookworm}
hash=$(sha256sum "$here/build-image.sh" | cut -c1-10)
echo "orthanc-remote/debian:$suite-$hash"
