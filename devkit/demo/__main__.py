import sys

from billing_pipeline.core.errors import BillingError
from devkit.demo.run import main

try:
    sys.exit(main())
except BillingError as exc:
    print(f"demo: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
