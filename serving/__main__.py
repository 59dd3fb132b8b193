"""`python -m serving`: serve every model under --model-base-path over gRPC."""

import sys

from model.startup import import_tensorflow

import_tensorflow(initialize=False)  # before anything else imports it: quietly; the
# runtime starts once the flags have set its thread pools (`serving.server.main`)

from serving.server import main  # noqa: E402

sys.exit(main())
