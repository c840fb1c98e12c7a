import os
import sys

from replicate.cli import main

code = main()
if code == 130:  # Ctrl-C: everything is said and saved; skip torch's seconds-long interpreter teardown
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
