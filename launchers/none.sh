#!/bin/sh
# cade launcher `none`: run the entrypoint as it is (one process per task, no rank mapping).
[ "$#" -gt 0 ] || { echo "cade launcher: no entrypoint given" >&2; exit 5; }
exec "$@"
