"""Container health check: exits 0 when the API answers its health path (API_HEALTH_PATH,
default /) with 200 on its own port.

Run by Docker's HEALTHCHECK with the image's Python, so the image needs no curl.
"""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}{os.environ.get('API_HEALTH_PATH', '/')}"
try:
    with urllib.request.urlopen(url, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as error:
    print(f"health check {url}: {error}", file=sys.stderr)
    sys.exit(1)
