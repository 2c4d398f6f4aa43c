"""Container health check: exits 0 when the API answers its own health endpoint
(API_HEALTH_PATH, default /healthz: served.py answers it without the app) with 200 on its port.

Run by Docker's HEALTHCHECK with the image's Python, so the image needs no curl.
"""

import os
import sys
import urllib.request

path = os.environ.get("API_HEALTH_PATH", "/healthz")
url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}{path}"
try:
    with urllib.request.urlopen(url, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as error:
    print(f"health check {url}: {error}", file=sys.stderr)
    sys.exit(1)
