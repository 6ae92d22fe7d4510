#!/bin/bash
# Runs hero-host with its stdout copied to a file for the Fluent Bit sidecar,
# and still to the container's stdout (kubectl logs keeps working).
#
# hero-host is exec'd, so it stays PID 1 and gets SIGTERM itself (graceful
# drain). The file is truncated in place past HERO_LOG_MAX_BYTES: Fluent Bit
# notices the truncation and reads on from the start; lines written after its
# last read and before the truncation can be lost, so keep the bound well
# above what is written between two reads.
set -u
log=${HERO_LOG_FILE:-/var/log/hero-host/hero-host.log}
max=${HERO_LOG_MAX_BYTES:-67108864}
: >>"$log"
(
  while sleep 10; do
    if [ "$(stat -c %s "$log")" -gt "$max" ]; then : >"$log"; fi
  done
) &
exec > >(exec tee -a "$log")
# Listen addresses and the rest come from HERO_HOST_* variables.
exec "${HERO_HOST_BIN:-/usr/local/bin/hero-host}" up "$@"
