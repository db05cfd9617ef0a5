#!/usr/bin/env bash
# The README demo: on a fresh Debian 12 machine (as root) this installs what Formation needs, starts a
# local node inside its own network namespace, builds and ships examples/hello-server, waits for
# SUCCESS, then shows the app answering over HTTP at its formnet address and an ssh login, both
# through a temporary formnet (WireGuard) peer. Leaves the node running; `npx form node down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s.%N)
elapsed() { awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { printf "%.1f", a - b }'; }
step() { printf '\n\033[1m==> %s\033[0m (%s s)\n' "$*" "$(elapsed)"; }

step "Installing what Formation needs"
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"
form() { node packages/cli/bin/form.js "$@"; }
NETNS=${FORM_DEMO_NETNS:-formdemo}

step "Creating your developer key (form kit init --yes)"
form kit init --yes

step "Checking this host (form node doctor)"
form node doctor --skip-kvm-probe || true

step "Starting a local node in network namespace $NETNS (form node up --netns $NETNS)"
form node up --netns "$NETNS"

step "Validating and building the Formpack (form pack build examples/hello-server)"
form pack validate examples/hello-server
form pack build examples/hello-server

step "Shipping it (form pack ship examples/hello-server)"
ID=$(form pack ship examples/hello-server --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).id))')
echo "instance: $ID"

step "Waiting for SUCCESS (form manage get status $ID)"
for _ in $(seq 1 120); do
  S=$(form manage get status "$ID" --json)
  STATUS=$(echo "$S" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).status))')
  [ "$STATUS" = PENDING ] || break
  sleep 1
done
form manage get status "$ID"
[ "$STATUS" = SUCCESS ] || { echo "deployment did not succeed" >&2; exit 1; }

step "HTTP over formnet (form proxy hello-server 18080:8080, then curl 127.0.0.1:18080)"
form proxy hello-server 18080:8080 --for 20 &
PROXY=$!
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:18080/ 2>/dev/null && break; sleep 0.2; done
kill "$PROXY" 2>/dev/null || true
wait "$PROXY" 2>/dev/null || true

step "ssh over formnet (form ssh bigdog@hello-server.dev.formation.local -- uname -a)"
SSHPASS=bigdog123 form ssh bigdog@hello-server.dev.formation.local -- 'uname -a; echo "I am $(whoami) on $(hostname)"'

step "Done in $(elapsed) s. The node keeps running: \`npx form manage list\`, \`npx form ssh bigdog@hello-server.dev.formation.local\`, \`npx form web login\`, \`npx form node down\`"
