#!/bin/sh
# Debian prerm: stop the service before its binary goes away.
set -e
if [ -d /run/systemd/system ] && [ "$1" = "remove" ]; then
  systemctl stop coopr-gslb.service >/dev/null 2>&1 || true
fi
