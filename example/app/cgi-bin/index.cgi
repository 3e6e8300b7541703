#!/bin/sh
# / when FAIL_PERCENT is set: answers 500 on about FAIL_PERCENT % of requests (a bad canary), else the version.
r=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
if [ $((r * 100 / 256)) -lt "${FAIL_PERCENT:-0}" ]; then
  printf 'Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nfailing on purpose (FAIL_PERCENT=%s)\n' \
    "$FAIL_PERCENT"
else
  printf 'Content-Type: text/plain\r\n\r\n%s\n' "$APP_VERSION"
fi
