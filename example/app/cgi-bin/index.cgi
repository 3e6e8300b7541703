#!/bin/sh
# / when FAIL_PERCENT is set: answers 500 (FAIL_STATUS: another 5xx) on about FAIL_PERCENT % of requests (a bad
# canary), else the version.
# HANG_ROOT=1: never answers; DROP_ROOT=1: the connection's httpd process dies, so the socket closes with no
# answer; SLOW_MS=N: answers after N milliseconds; STOP_AFTER=N: the Nth request to / (and every later one, while
# a connection is still accepted) stops httpd, which then refuses connections (entrypoint.sh keeps the container up).
if [ "${STOP_AFTER:-0}" != 0 ]; then
  echo >> /tmp/root-requests
  if [ "$(wc -c < /tmp/root-requests)" -ge "$STOP_AFTER" ]; then
    kill "$(cat /tmp/httpd.pid)" 2>/dev/null
  fi
fi
if [ "${HANG_ROOT:-0}" = 1 ]; then
  sleep 600
fi
if [ "${DROP_ROOT:-0}" = 1 ]; then
  kill -9 "$PPID"
  exit 0
fi
ms=${SLOW_MS:-0}
case $ms in ''|*[!0-9]*) ms=0 ;; esac
if [ "$ms" -gt 0 ]; then
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
fi
r=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
if [ $((r * 100 / 256)) -lt "${FAIL_PERCENT:-0}" ]; then
  st=${FAIL_STATUS:-500}
  case $st in 5[0-9][0-9]) ;; *) st=500 ;; esac
  printf 'Status: %s Failing\r\nContent-Type: text/plain\r\n\r\nfailing on purpose (FAIL_PERCENT=%s)\n' \
    "$st" "$FAIL_PERCENT"
else
  printf 'Content-Type: text/plain\r\n\r\n%s\n' "$APP_VERSION"
fi
