"""``vcam ctl COMMAND``: talk to a running vcam over its socket."""
from __future__ import annotations

import json
import sys

from ..live.server import send_command


def main(a) -> int:
    reply = send_command(a.words, a.name)
    if not reply.get("ok"):
        print(f"vcam: error: {reply.get('error')}", file=sys.stderr)
        return 1
    reply.pop("ok", None)
    print(json.dumps(reply, indent=2, ensure_ascii=False))
    return 0
