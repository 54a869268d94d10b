#!/usr/bin/env bash
# Test certificates, made with the openssl command line: a CA (ca.pem), a server
# certificate for 127.0.0.1 signed by it (server.pem, server.key), and an unrelated CA
# (other.pem) for "untrusted" cases. Usage: make_certs.sh DIR
set -euo pipefail
cd "$1"
quiet() { "$@" 2>/dev/null >/dev/null; }
quiet openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=Treaty test CA"
quiet openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
printf 'subjectAltName=IP:127.0.0.1\n' > san.ext
quiet openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext
quiet openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 -subj "/CN=Someone else"
# Servers started as root may read these as another user (Mosquitto drops to `mosquitto`).
chmod 755 .
chmod 644 server.key
