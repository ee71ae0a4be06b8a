"""`python -m frozen_bn.demo worker SPEC`: the demo's graph-mode subprocess.

`frozen_bn.demo.worker.start` runs it; it prints its results as JSON.
"""

import json
import sys

from frozen_bn.demo import worker

if sys.argv[1:2] != ["worker"] or len(sys.argv) != 3:
    sys.exit("usage: python -m frozen_bn.demo worker SPEC_JSON")
print(json.dumps(worker.run(json.loads(sys.argv[2]))))
