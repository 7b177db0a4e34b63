#!/usr/bin/env bash
# `make demo`: the SmartWatts plan validated, linted and shown; a backup, restore, check
# and copy to a second location, on a sample under .demo/; then live.py: SmartWatts on an
# embedded PostgreSQL with meter readings arriving, run by `drplan serve` until Ctrl-C.
#
# The plan's secrets are ${ENV_VAR} references; the demo sets placeholder values
# (nothing is sent anywhere) so that validation can check them, and shows that
# drplan never prints them.
set -euo pipefail
cd "$(dirname "$0")"

export SMARTWATTS_DB_PASSWORD=demo-not-a-secret REGISTRY_PASSWORD=demo-not-a-secret
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

# A live round trip on embedded defaults: a local repository under .demo/ holding a
# sample of SmartWatts configuration, backed up twice, restored, compared and checked.
work="$(cd ../.. && pwd)/.demo"
python3 live.py --work "$work/live" --stop-leftover  # an interrupted demo's server, if any
rm -rf "$work"
mkdir -p "$work/sample/etc/smartwatts" "$work/sample/var/log/smartwatts"
cp plan.yaml "$work/sample/etc/smartwatts/plan.yaml"
for i in $(seq 1 200); do
  printf 'service = meter-%03d\nreplicas = %d\nendpoint = https://api.smartwatts.example/v1/meters/%d\n' "$i" $((i % 5 + 1)) "$i" \
    > "$work/sample/etc/smartwatts/meter-$i.conf"
done
python3 - "$work/sample/var/log/smartwatts/ingest.log" <<'PY'
import random, sys
rng = random.Random(7)
with open(sys.argv[1], "w") as log:
    for i in range(60000):
        log.write(f"2026-11-26T01:{i % 60:02d}:{i % 59:02d}Z meter={rng.randint(1, 5000)} kwh={rng.random() * 9:.4f} status=ok\n")
PY
ln -s smartwatts/plan.yaml "$work/sample/etc/plan-link.yaml"
export DRPLAN_PASSWORD=demo-repository-password

step "drplan repo init .demo/repo"
drplan repo init "$work/repo" --kdf-memory 8192 --kdf-time 1

step "drplan backup files .demo/sample --repo .demo/repo"
drplan backup files "$work/sample" --repo "$work/repo" --tag demo

step "change one file, back up again: only the change is stored"
echo "replicas = 9" >> "$work/sample/etc/smartwatts/meter-7.conf"
drplan backup files "$work/sample" --repo "$work/repo" --tag demo

step "drplan snapshots --repo .demo/repo"
drplan snapshots --repo "$work/repo"

step "drplan diff (first and second snapshot)"
ids=$(drplan snapshots --repo "$work/repo" --json | python3 -c 'import json, sys; print(" ".join(s["short_id"] for s in json.load(sys.stdin)))')
drplan diff $ids --repo "$work/repo"

step "drplan restore latest --target .demo/restore"
drplan restore latest --target "$work/restore" --repo "$work/repo"
diff -r "$work/sample" "$work/restore$work/sample" && echo "restored tree is identical to the source"

step "drplan check --read-data --repo .demo/repo"
drplan check --read-data --repo "$work/repo"

step "drplan copy --from .demo/repo --to .demo/offsite   (a second location: a verified replica)"
drplan copy --from "$work/repo" --to "$work/offsite"
rm -rf "$work/repo"
echo "the primary repository is gone; restoring from the replica alone:"
drplan restore latest --target "$work/restore-offsite" --repo "$work/offsite"
diff -r "$work/sample" "$work/restore-offsite$work/sample" && echo "restored from the replica: identical to the source"

step "Live: SmartWatts on an embedded PostgreSQL, run by drplan serve"
exec python3 live.py
