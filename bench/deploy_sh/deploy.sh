#!/bin/bash
# deploy.sh: the script bluegreen-hooks replaces, as CodeDeploy ran it from ApplicationStart. Kept as it
# is (bench/vs_deploy_sh.py runs it unchanged, with /etc/nginx/conf.d and systemctl redirected to the
# bench's own nginx).
set -e
cd "$(dirname "$0")"

if docker-compose -p app-blue -f docker-compose.blue.yml ps | grep Up; then
  NEW=green
  OLD=blue
else
  NEW=blue
  OLD=green
fi

echo "starting $NEW"
docker-compose -p app-$NEW -f docker-compose.$NEW.yml up --build -d
sleep 10

if docker-compose -p app-$NEW -f docker-compose.$NEW.yml ps | grep Up; then
  cp service-url-$NEW.inc /etc/nginx/conf.d/service-url.inc
  systemctl reload nginx
  docker-compose -p app-$OLD -f docker-compose.$OLD.yml down
  echo "$NEW is live"
else
  echo "$NEW did not start"
  exit 1
fi
