"""`python -m serving`: serve every model under --model-base-path over gRPC."""

import sys

from model.startup import import_tensorflow

import_tensorflow()  # before anything else imports it: quietly

from serving.server import main  # noqa: E402

sys.exit(main())
