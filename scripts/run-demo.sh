#!/usr/bin/env bash
# `make run`: create a demo home on first use, print how to try it, and run the server.
set -euo pipefail
home=${1:-.demo}
bin=.venv/bin/signoff
first=0
[ -f "$home/signoff.yaml" ] || first=1
"$bin" init "$home" >/dev/null
if [ -x .venv/bin/python ] && "$bin" --help 2>/dev/null | grep -q " users "; then
  if [ ! -f "$home/demo-console.password" ]; then
    pw=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))')
    for u in alice bob carol dave; do
      printf '%s\n' "$pw" | "$bin" --config "$home/signoff.yaml" users add "$u" --password-stdin >/dev/null 2>&1 || true
    done
    umask 077; printf '%s\n' "$pw" > "$home/demo-console.password"
  fi
fi
token=$(cat "$home/demo-agent.token")
url=$(.venv/bin/python - "$home/signoff.yaml" <<'PY'
import sys
from bot.settings import load_settings
s = load_settings(sys.argv[1])
print(f"http://{s.server.host}:{s.server.port}")
PY
)
cat <<MSG

  signoff demo home: $home   (policy: $home/policies/example.yaml)
  console:           $url/console
MSG
if [ -f "$home/demo-console.password" ]; then
  echo "  console login:     alice (finance) / bob (dba) / carol (leads) / dave (security: unknown tools), password $(cat "$home/demo-console.password")"
fi
cat <<MSG
  demo agent token:  $token

  Try it (in another terminal):
    export TOKEN=$token
    # auto tier: approved at once, with a grant
    curl -s $url/v1/requests -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
      -d '{"tool":"crm.read","arguments":{"id":42}}'
    # confirm tier: pending until finance decides
    curl -s $url/v1/requests -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
      -d '{"tool":"payments.transfer","arguments":{"amount":25000,"currency":"USD","to":"acct-123"},"justification":"Refund for order 8812"}'

MSG
exec "$bin" --config "$home/signoff.yaml" serve
