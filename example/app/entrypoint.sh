#!/bin/sh
# Example app for bluegreen-hooks. Environment:
#   APP_VERSION  served on /                      (set at build time: --build-arg APP_VERSION=v2)
#   HOST, PORT   where to listen                  (default 0.0.0.0:8080)
#   START_DELAY  seconds to wait before listening (connections are refused until then)
#   UNHEALTHY=1  /health answers 404 (a version that never gets healthy)
#   EXIT_CODE=N  exit with N instead of serving   (a version that dies at start)
#   FAIL_PERCENT=N  / answers 500 on about N % of requests (a bad canary; /health stays ok)
#   FAIL_STATUS=5xx the status of those failures (default 500; e.g. 503, which nginx may retry elsewhere)
#   HANG_ROOT=1     / never answers (sleeps 600 s; /health stays ok)
#   DROP_ROOT=1     / closes the connection without answering (/health stays ok)
#   SLOW_MS=N       / answers after N milliseconds (/health stays fast)
#   STOP_AFTER=N    after N requests to /, the server stops listening (its httpd exits; the container keeps
#                   running, so the port refuses connections: a version that dies after it got healthy)
#   ALLOC_MB=N   hold N MiB of RAM from before listening until the end, as a JVM holds its heap; if that
#                memory is taken away (OOM-killed), the app dies at once, as a JVM would (docs/memory.md)
# Paths: /  -> the version; /health -> "ok"; /cgi-bin/slow?N -> the version after N seconds;
#        /cgi-bin/stream -> an SSE stream of "data: <version> <n>" once a second.
set -eu
www=/tmp/www
mkdir -p "$www/cgi-bin"
cp /app/cgi-bin/* "$www/cgi-bin/"
rm -f /tmp/root-requests
if [ "${FAIL_PERCENT:-0}" = 0 ] && [ "${HANG_ROOT:-0}" = 0 ] && [ "${DROP_ROOT:-0}" = 0 ] && [ "${SLOW_MS:-0}" = 0 ] \
  && [ "${STOP_AFTER:-0}" = 0 ]
then
  printf '%s\n' "$APP_VERSION" > "$www/index.html"
else
  echo "example app $APP_VERSION: / by cgi-bin/index.cgi (FAIL_PERCENT=${FAIL_PERCENT:-0} HANG_ROOT=${HANG_ROOT:-0}" \
    "DROP_ROOT=${DROP_ROOT:-0} SLOW_MS=${SLOW_MS:-0} STOP_AFTER=${STOP_AFTER:-0})" >&2
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
alloc=${ALLOC_MB:-0}
holder=
if [ "$alloc" != 0 ]; then
  # tail keeps its input, one line without an end, in RAM until the input ends, which is never
  rm -f /tmp/alloc.done
  { head -c "${alloc}m" /dev/zero && touch /tmp/alloc.done && exec sleep 2147483647; } | tail >/dev/null &
  holder=$!
  echo "example app $APP_VERSION: allocating ${alloc} MiB"
  while [ ! -e /tmp/alloc.done ]; do
    if ! kill -0 "$holder" 2>/dev/null; then
      echo "example app $APP_VERSION: the ${alloc} MiB allocation was killed (out of memory?)" >&2
      exit 137
    fi
    sleep 0.05
  done
  echo "example app $APP_VERSION: holding ${alloc} MiB"
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
echo "$pid" > /tmp/httpd.pid   # STOP_AFTER: index.cgi stops httpd after N requests to /
if [ -n "$holder" ]; then   # the held memory is the app's: losing it kills the app
  ( while kill -0 "$holder" 2>/dev/null; do sleep 0.2; done
    echo "example app $APP_VERSION: its ${alloc} MiB were killed (out of memory?): dying" >&2
    kill -KILL "$pid" ) &
fi
if [ "${STOP_AFTER:-0}" != 0 ]; then
  wait "$pid" || true
  echo "example app $APP_VERSION: stopped listening after $STOP_AFTER requests to / (STOP_AFTER), still running" >&2
  trap 'exit 0' TERM INT
  sleep 2147483647 &
  wait $!
fi
wait "$pid"
