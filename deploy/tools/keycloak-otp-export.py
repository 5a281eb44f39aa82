#!/usr/bin/env python3
"""Keycloak realm export -> `otp-service import` lines (JSON Lines on stdout).

  keycloak-otp-export.py realm-export.json [more-users.json ...] > users.jsonl

Reads Keycloak's realm (or `*-users-N.json`) export files: each user's
`credentials[]` of `type` "otp" whose `credentialData.subType` is "totp".
Keycloak keeps the secret in `secretData` as `{"value": ...}`: the secret as
text, whose UTF-8 bytes are the HMAC key (what its QR code carries, base32
encoded), unless `credentialData.secretEncoding` is "BASE32" (then the value
is base32 already). `credentialData.algorithm` is "HmacSHA1" / "HmacSHA256" /
"HmacSHA512"; `digits` and `period` are numbers.

`user_id` is the Keycloak user's `id`, or with `--user-id username` its
username: map it to the ids of the issuer otp-service trusts if they differ.
HOTP credentials are reported on stderr and left out. Only the standard
library is used; the secrets go to stdout only (keep the file safe).
"""

import base64
import json
import sys


def lines(export: dict, user_key: str):
    for user in export.get("users", []):
        for credential in user.get("credentials", []) or []:
            if credential.get("type") != "otp":
                continue
            data = json.loads(credential.get("credentialData") or "{}")
            if data.get("subType", "totp") != "totp":
                print(f"skipped: {user.get('username')}: {data.get('subType')} credential", file=sys.stderr)
                continue
            value = json.loads(credential.get("secretData") or "{}").get("value", "")
            if (data.get("secretEncoding") or "").upper() == "BASE32":
                secret = value
            else:
                secret = base64.b32encode(value.encode("utf-8")).decode("ascii").rstrip("=")
            algorithm = (data.get("algorithm") or "HmacSHA1").upper().removeprefix("HMAC")
            yield {
                "user_id": user.get(user_key),
                "login_name": user.get("username"),
                "secret": secret,
                "algorithm": algorithm,
                "digits": data.get("digits", 6),
                "period": data.get("period", 30),
            }


def main(argv: list[str]) -> int:
    user_key = "id"
    if len(argv) >= 2 and argv[0] == "--user-id":
        user_key, argv = argv[1], argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for path in argv:
        with open(path, encoding="utf-8") as file:
            for line in lines(json.load(file), user_key):
                print(json.dumps(line, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
