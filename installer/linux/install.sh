#!/bin/sh
# Install the Mamori agent system-wide on a Linux desktop (run as root).
#   install.sh WHEEL PUBKEY [BUNDLE]
set -eu
wheel=$1; pub=$2; bundle=${3:-}
python3 -m venv /opt/mamori
/opt/mamori/bin/pip install --quiet "$wheel"
ln -sf /opt/mamori/bin/mamori /usr/bin/mamori
install -d -m 0755 /etc/mamori
install -m 0644 "$pub" /etc/mamori/policy-signing.pub
[ -n "$bundle" ] && install -m 0644 "$bundle" /etc/mamori/policy.dsse.json
[ -f /etc/mamori/agent.toml ] || install -m 0644 "$(dirname "$0")/agent.toml" /etc/mamori/agent.toml
install -m 0644 "$(dirname "$0")/mamori-agent.service" /usr/lib/systemd/user/mamori-agent.service
install -m 0644 "$(dirname "$0")/mamori-agent.desktop" /etc/xdg/autostart/mamori-agent.desktop
echo "Mamori installed. It starts at the next login; check with: mamori agent doctor"
