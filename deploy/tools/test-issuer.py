#!/usr/bin/env python3
"""A throwaway OpenID issuer on loopback, for the smoke tests only.

It signs RS256 access tokens with a fresh RSA key (made and used through the
`openssl` command line, so only the Python standard library is needed) and
serves what the service fetches to check them:

  GET /.well-known/openid-configuration   {"issuer": ..., "jwks_uri": ...}
  GET /oauth/v2/keys                      the public key as a JWK set

  test-issuer.py serve DIR     generates DIR/key.pem, listens on 127.0.0.1:0
                               and writes the issuer URL to DIR/issuer once
                               it accepts connections; runs until killed
  test-issuer.py token DIR AUDIENCE SUBJECT [LOGIN_NAME]
                               prints a token valid for 15 minutes, with
                               the claims of $TEST_ISSUER_CLAIMS (a JSON
                               object) added when it is set

Never for production: the key lives in DIR unencrypted.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

KID = "smoke-test-key"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout


def jwks(key: Path) -> dict:
    out = openssl("rsa", "-in", str(key), "-noout", "-modulus").decode().strip()
    modulus = bytes.fromhex(out.split("=", 1)[1])
    exponent = (65537).to_bytes(3, "big")
    return {
        "keys": [
            {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
             "n": b64url(modulus), "e": b64url(exponent)}
        ]
    }


def serve(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "key.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    documents = {
        "/.well-known/openid-configuration": {"issuer": issuer, "jwks_uri": f"{issuer}/oauth/v2/keys"},
        "/oauth/v2/keys": jwks(key),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            document = documents.get(self.path.split("?", 1)[0])
            body = json.dumps(document or {"error": "not found"}).encode()
            self.send_response(200 if document else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    # Written last and atomically: its presence means the issuer answers.
    (directory / "issuer.tmp").write_text(issuer)
    (directory / "issuer.tmp").rename(directory / "issuer")
    server.serve_forever()
    return 0


def token(directory: Path, audience: str, subject: str, login_name: str | None) -> int:
    issuer = (directory / "issuer").read_text().strip()
    now = int(time.time())
    claims = {
        "iss": issuer, "sub": subject, "aud": [audience], "iat": now, "nbf": now - 5,
        "exp": now + 900, "urn:zitadel:iam:user:resourceowner:id": "smoke-org",
    }
    if login_name:
        claims["preferred_username"] = login_name
    # More claims (roles, scope, client_id) as a JSON object, for callers
    # that need an administrator or a trusted caller (.ci/schemathesis-check).
    claims.update(json.loads(os.environ.get("TEST_ISSUER_CLAIMS") or "{}"))
    header = {"alg": "RS256", "typ": "JWT", "kid": KID}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = openssl("dgst", "-sha256", "-sign", str(directory / "key.pem"), data=signing_input.encode())
    print(f"{signing_input}.{b64url(signature)}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "serve":
        return serve(Path(argv[1]))
    if len(argv) in (4, 5) and argv[0] == "token":
        return token(Path(argv[1]), argv[2], argv[3], argv[4] if len(argv) == 5 else None)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
