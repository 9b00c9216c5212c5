#!/usr/bin/env python3
"""Container health check for driftloop's images: exit 0 when GET URL answers 2xx within the timeout.

Used by the images' HEALTHCHECK and by the Kubernetes exec probes of the loop's workers, whose
``--metrics-port`` binds 127.0.0.1 (reachable from inside the container, not from the kubelet).
Standard library only, so it runs in any Python of the image without importing driftloop.

    driftloop-healthcheck [URL]   # default: $DRIFTLOOP_HEALTHCHECK_URL; $VARS in URL are expanded
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    url = os.path.expandvars(argv[1] if len(argv) > 1 else os.environ.get("DRIFTLOOP_HEALTHCHECK_URL", ""))
    if not url:
        print("driftloop-healthcheck: no URL (argument or DRIFTLOOP_HEALTHCHECK_URL)", file=sys.stderr)
        return 2
    timeout_s = float(os.environ.get("DRIFTLOOP_HEALTHCHECK_TIMEOUT_S", "3"))
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = int(response.status)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"driftloop-healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    if not 200 <= status < 300:
        print(f"driftloop-healthcheck: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
