#!/usr/bin/env bash
# Runs the tests that need real servers (vitest.stack.config.mts): the database suites and an
# end-to-end chat on PostgreSQL; promtool on the alert rules and on Vega's /metrics; a real
# Prometheus scraping Vega under load, running every dashboard and alert query; amtool on the
# Alertmanager configuration, and an alert from a real fault travelling Vega -> Prometheus ->
# Alertmanager -> a fake Slack webhook, firing then resolved; docker-compose config. Installs what is missing from Debian's packages (apt-get, as root), starts a throwaway
# PostgreSQL cluster on 127.0.0.1, and stops and removes it on exit (the tests start and stop
# Prometheus themselves).
# Extra arguments go to vitest (CI passes its JSON reporter options).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test:stack] %s\n' "$*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

ensure_packages() {
  local missing=()
  [ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
  command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

ensure_packages
[ -f dist/main.js ] || npm run build --silent

PGBIN="$(pg_bin)"
PGROOT="$(mktemp -d /tmp/vega-pg-XXXXXX)"
PGPORT="$(free_port)"
chown postgres "$PGROOT" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop_pg() {
  as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PGROOT"
}
trap stop_pg EXIT

log "starting PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"
as_pg "$PGBIN/initdb" -D "$PGROOT/data" -A trust -U vega -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT -c fsync=off" start >/dev/null
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U vega vega_test

export VEGA_TEST_DATABASE_URL="postgres://vega@127.0.0.1:$PGPORT/vega_test"
npx vitest run --config vitest.stack.config.mts "$@"
