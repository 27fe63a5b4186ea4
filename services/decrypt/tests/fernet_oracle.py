"""Python `cryptography` as the reference for the Rust Fernet core's tests.

Reads JSON requests, one per line, and answers each with one JSON line:
  {"op": "decrypt", "keys": [...], "token": b64, "ttl": int|null, "now": int|null}
      -> {"ok": true, "plaintext": b64} | {"ok": false}     (MultiFernet, like sigma's key ring)
  {"op": "encrypt", "key": k, "plaintext": b64} -> {"token": b64}
"""

import base64
import json
import sys

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def answer(request):
    if request["op"] == "encrypt":
        token = Fernet(request["key"]).encrypt(base64.b64decode(request["plaintext"]))
        return {"token": base64.b64encode(token).decode()}
    ring = MultiFernet([Fernet(k) for k in request["keys"]])
    token = base64.b64decode(request["token"])
    try:
        if request.get("ttl") is None:
            plaintext = ring.decrypt(token)
        else:
            plaintext = ring.decrypt_at_time(token, request["ttl"], request["now"])
    except InvalidToken:
        return {"ok": False}
    return {"ok": True, "plaintext": base64.b64encode(plaintext).decode()}


for line in sys.stdin:
    print(json.dumps(answer(json.loads(line))), flush=True)
