"""`python -m serving`: serve every model under --model-base-path over gRPC."""

import sys

from serving.server import main

sys.exit(main())
