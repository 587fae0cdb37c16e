#!/bin/sh
# System tools some tests talk to: a C compiler and OpenSSL's headers (the
# native load generator, scripts/loadgen/native/), Mosquitto's broker and clients
# (mosquitto_passwd, mosquitto_pub, mosquitto_sub), Chromium (MQTT.js in a
# real browser; npm fetches MQTT.js itself into build/npm) and PostgreSQL's
# server programs (tests/postgres.py runs initdb and pg_ctl in a temporary
# directory; no system service is used). Installed with apt-get
# where that is possible (root, Debian); where it is not, the tests that need
# them skip and say why. Called by `make test`.
set -u
missing=""
command -v mosquitto_passwd >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
command -v mosquitto_pub >/dev/null 2>&1 || missing="$missing mosquitto-clients"
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
[ -f /usr/include/openssl/ssl.h ] || missing="$missing libssl-dev"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
    || missing="$missing postgresql"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test tools: not installing$missing (needs root and apt-get); the tests that use them skip"
    exit 0
fi
echo "test tools: installing$missing"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null 2>&1; } \
    || echo "test tools: could not install$missing; the tests that use them skip"
# the packages start a system broker on port 1883 and a PostgreSQL cluster on
# 5432; the tests start their own
if command -v systemctl >/dev/null 2>&1; then
    systemctl stop mosquitto >/dev/null 2>&1 || true
    case "$missing" in *postgresql*) systemctl stop postgresql >/dev/null 2>&1 || true ;; esac
fi
exit 0
