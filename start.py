"""nbpool's entry point: parse the config, wire the pool, proxy and web app, serve on :8000.

The service itself arrives with the front-door issue; until then this says so.
"""

import sys


def main() -> int:
    print("nbpool: the service (pool, proxy and pages on port 8000) is not wired yet; "
          "'make images' and 'make test' already work.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
