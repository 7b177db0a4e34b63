#!/usr/bin/env bash
# `make demo`: the SmartWatts plan validated, linted and shown.
#
# The plan's secrets are ${ENV_VAR} references; the demo sets placeholder values
# (nothing is sent anywhere) so that validation can check them, and shows that
# drplan never prints them.
set -euo pipefail
cd "$(dirname "$0")"

export SMARTWATTS_DB_PASSWORD=demo-not-a-secret
export SLACK_WEBHOOK_URL=http://127.0.0.1:9/demo-slack
export SMTP_PASSWORD=demo-not-a-secret
export PAGERDUTY_ROUTING_KEY=demo-not-a-secret
export STATUS_PAGE_API_KEY=demo-not-a-secret

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }

step "drplan plan validate plan.yaml"
drplan plan validate plan.yaml

step "drplan plan lint plan.yaml   (the written plan's own gaps; each is explained in plan.yaml)"
set +e
drplan plan lint plan.yaml
status=$?
set -e
case $status in
  0) echo "lint: no findings at error level" ;;
  6) echo "lint exit code 6: the SmartWatts plan cannot meet some of its own objectives (expected; see the LINT comments in plan.yaml)" ;;
  *) echo "lint failed unexpectedly (exit code $status)"; exit "$status" ;;
esac

step "drplan plan show plan.yaml"
drplan plan show plan.yaml

step "drplan plan show --json plan.yaml | objectives (seconds)"
drplan plan show --json plan.yaml | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["objectives"], indent=2))'
