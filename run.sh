#!/usr/bin/env bash
# The one entry point: ./run.sh [demo | orders-demo | test | <any tributary command>]
#   ./run.sh                start Redis and Postgres (or find running ones) and say which, as the original did
#   ./run.sh demo           install if needed, bring services up, run the engine on 5,000 sample events, print a summary
#   ./run.sh orders-demo    the same set-up, then the orders pipeline end to end: 10,000 orders (5% duplicates), then stats
#   ./run.sh test           the same set-up, then the whole test suite
#   ./run.sh start          the engine (Ctrl-C stops it gracefully)
#   ./run.sh produce 1000   sample events; any other verb is passed to the tributary CLI (./run.sh orders stats)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

need_install() {
  [ ! -d node_modules ] && return 0
  [ package-lock.json -nt node_modules/.package-lock.json ] && return 0
  return 1
}

need_build() {
  [ ! -f dist/cli/main.js ] && return 0
  [ -n "$(find src web package.json tsconfig.json -newer dist/cli/main.js -print -quit)" ] && return 0
  return 1
}

prepare() {
  command -v node >/dev/null || { echo "run.sh: Node.js >= 20 is required (https://nodejs.org)" >&2; exit 1; }
  if need_install; then
    echo "run.sh: installing dependencies (npm ci)" >&2
    npm ci --no-audit --no-fund >&2
  fi
  if need_build; then
    echo "run.sh: building" >&2
    npm run --silent build >&2
  fi
}

# The Node flags of the bin's shebang (src/cli/main.ts): a larger young generation for the engine.
cli() { node --max-semi-space-size=32 dist/cli/main.js "$@"; }
# The last command of a verb replaces this shell (exec): a SIGTERM to run.sh (systemd, Docker,
# kill) then reaches the CLI itself, which stops gracefully, instead of killing only the shell
# and leaving the engine running under PID 1.
exec_cli() { exec node --max-semi-space-size=32 dist/cli/main.js "$@"; }

# The PgBouncer tests start a real pgbouncer (Debian package); install it on a fresh machine.
ensure_pgbouncer() {
  command -v pgbouncer >/dev/null && return 0
  [ -x /usr/sbin/pgbouncer ] && return 0
  command -v apt-get >/dev/null || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: pgbouncer is not installed (apt-get install pgbouncer, as root): its tests will fail" >&2
    return 0
  fi
  echo "run.sh: installing pgbouncer (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q pgbouncer >&2 || { apt-get update -q >&2 && apt-get install -y -q pgbouncer >&2; } \
    || echo "run.sh: could not install pgbouncer: its tests will fail" >&2
}

# The dashboard's browser tests drive Debian's Chromium (playwright-core); install it on a fresh machine.
ensure_chromium() {
  command -v chromium >/dev/null && return 0
  [ -x /usr/bin/chromium ] && return 0
  command -v apt-get >/dev/null || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: chromium is not installed (apt-get install chromium, as root): the dashboard's browser tests will fail" >&2
    return 0
  fi
  echo "run.sh: installing chromium (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >&2 || { apt-get update -q >&2 && apt-get install -y -q chromium >&2; } \
    || echo "run.sh: could not install chromium: the dashboard's browser tests will fail" >&2
}

verb="${1:-}"
[ $# -gt 0 ] && shift
case "$verb" in
  '')
    prepare
    cli up
    echo "run.sh: services are up. Next: ./run.sh start (the engine), ./run.sh demo, ./run.sh help" >&2
    ;;
  demo)
    prepare
    exec_cli demo "$@"
    ;;
  orders-demo)
    prepare
    cli up
    cli orders init-cache --all "$@"
    cli orders generate --count 10000 --duplicates 0.05 "$@"
    cli orders process --until-empty "$@"
    exec_cli orders stats "$@"
    ;;
  test)
    prepare
    npx tsc -p tsconfig.test.json   # tests type-check too (unused code included)
    cli up
    cli migrate
    ensure_pgbouncer
    ensure_chromium
    npx vitest run "$@"
    ;;
  help|-h|--help)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    echo
    prepare
    exec_cli --help
    ;;
  *)
    prepare
    exec_cli "$verb" "$@"
    ;;
esac
