"""Everything that knows TF Serving: its layout, its REST API, the serving contract.

- `contract`: signatures and tensors of a reseg export (what TF Serving serves)
- `graph`: the serving graph (raw tiles in, normalisation and merged rounds inside)
- `layout`: `<base>/<version>/` folders, atomic publication, the warmup file
- `validate`: loading an export in a fresh process and replaying its warmup requests
- `rest`: TF Serving's REST endpoints with timeouts and retries
- `backends`: `SavedModelBackend` (an export, in-process) and `load_backend` (any model path)
- `client`: `ServingBackend`, the predictor's model interface over REST

`load_backend` (any model path: a round's model, merged rounds or an export) is
re-exported here.
"""

from reseg.serving.backends import SavedModelBackend, load_backend

__all__ = ["SavedModelBackend", "load_backend"]
