#!/bin/sh
# Debian postinst: register the unit; start it only if it was running before.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  if [ "$1" = "configure" ] && [ -n "$2" ]; then
    systemctl try-restart coopr-gslb.service >/dev/null 2>&1 || true
  fi
fi
