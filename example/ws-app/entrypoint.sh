#!/bin/sh
set -eu
mkdir -p /tmp/www
echo ok > /tmp/www/health
printf '%s\n' "$APP_VERSION" > /tmp/www/index.html
echo "ws app $APP_VERSION: listening on ${HOST}:${PORT}"
exec /usr/bin/websocketd --address="$HOST" --port="$PORT" --staticdir=/tmp/www --passenv=APP_VERSION \
  --loglevel=error /bin/sh /app/ticks
