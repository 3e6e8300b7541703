#!/bin/sh
# Example app for bluegreen-hooks. Environment:
#   APP_VERSION  served on /                      (set at build time: --build-arg APP_VERSION=v2)
#   HOST, PORT   where to listen                  (default 0.0.0.0:8080)
#   START_DELAY  seconds to wait before listening (connections are refused until then)
#   UNHEALTHY=1  /health answers 404 (a version that never gets healthy)
#   EXIT_CODE=N  exit with N instead of serving   (a version that dies at start)
#   FAIL_PERCENT=N  / answers 500 on about N % of requests (a bad canary; /health stays ok)
#   HANG_ROOT=1     / never answers (sleeps 600 s; /health stays ok)
#   DROP_ROOT=1     / closes the connection without answering (/health stays ok)
#   SLOW_MS=N       / answers after N milliseconds (/health stays fast)
# Paths: /  -> the version; /health -> "ok"; /cgi-bin/slow?N -> the version after N seconds;
#        /cgi-bin/stream -> an SSE stream of "data: <version> <n>" once a second.
set -eu
www=/tmp/www
mkdir -p "$www/cgi-bin"
cp /app/cgi-bin/* "$www/cgi-bin/"
if [ "${FAIL_PERCENT:-0}" = 0 ] && [ "${HANG_ROOT:-0}" = 0 ] && [ "${DROP_ROOT:-0}" = 0 ] && [ "${SLOW_MS:-0}" = 0 ]
then
  printf '%s\n' "$APP_VERSION" > "$www/index.html"
else
  echo "example app $APP_VERSION: / by cgi-bin/index.cgi (FAIL_PERCENT=${FAIL_PERCENT:-0} HANG_ROOT=${HANG_ROOT:-0}" \
    "DROP_ROOT=${DROP_ROOT:-0} SLOW_MS=${SLOW_MS:-0})" >&2
fi
delay=${START_DELAY:-0}
if [ "$delay" != 0 ]; then
  echo "example app $APP_VERSION: starting in ${delay}s"
  sleep "$delay"
fi
if [ -n "${EXIT_CODE:-}" ]; then
  echo "example app $APP_VERSION: exiting with code $EXIT_CODE as asked" >&2
  exit "$EXIT_CODE"
fi
if [ "${UNHEALTHY:-0}" = 1 ]; then
  echo "example app $APP_VERSION: UNHEALTHY=1, /health will answer 404" >&2
else
  echo ok > "$www/health"
fi
echo "example app $APP_VERSION: listening on ${HOST}:${PORT}"
# As PID 1, httpd would ignore SIGTERM: run it as a child and stop it on TERM/INT (docker stop).
httpd -f -p "${HOST}:${PORT}" -h "$www" &
pid=$!
trap 'echo "example app $APP_VERSION: stopping"; kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
wait "$pid"
