import sys

from billing_pipeline.core.errors import BillingError
from devkit.ui.serve import main

try:
    sys.exit(main(sys.argv[1:]))
except BillingError as exc:
    print(f"ui: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
