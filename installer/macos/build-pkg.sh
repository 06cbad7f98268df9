#!/bin/sh
# Build the Mamori agent .pkg ON A MAC from the directory `mamori package pkg` wrote (this script is copied
# there). Needs Xcode command line tools (pkgbuild, productbuild) and python3 (3.11+) with venv.
#   ./build-pkg.sh [--sign "Developer ID Installer: …"]
# Not run by the Linux CI: it is the documented step that needs macOS.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/package.env"
APP="/Library/Application Support/Mamori"
venv="$here/root$APP/venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python3" -m pip install --quiet --no-compile "$MAMORI_SOURCE"
"$venv/bin/python3" -m pip uninstall --quiet --yes pip setuptools
# The venv was made in the build directory; point its scripts and pyvenv.cfg at where the pkg installs it.
for f in "$venv/bin/"*; do
    [ -L "$f" ] || [ ! -f "$f" ] || sed -i '' "1s|^#!$venv/|#!$APP/venv/|" "$f"
done
sed -i '' "s|$venv|$APP/venv|g" "$venv/pyvenv.cfg"
rm -f "$venv/bin/activate"*
pkgbuild --root "$here/root" --scripts "$here/scripts" --identifier jp.co.mamori.agent \
    --version "$MAMORI_VERSION" --install-location / "$here/mamori-agent-component.pkg"
sign=""
if [ "${1:-}" = "--sign" ]; then sign="--sign $2"; fi
# shellcheck disable=SC2086
productbuild --package "$here/mamori-agent-component.pkg" $sign "$here/mamori-agent-$MAMORI_VERSION.pkg"
echo "built $here/mamori-agent-$MAMORI_VERSION.pkg; deploy it with the PPPC profile (mamori-pppc.mobileconfig)"
