"""Everything that knows TF Serving: its layout, its REST API, the serving contract.

- `contract`: signatures and tensors of a reseg export (what TF Serving serves)
- `graph`: the serving graph (raw tiles in, normalisation and merged rounds inside)
- `layout`: `<base>/<version>/` folders, atomic publication, the warmup file
- `validate`: loading an export in a fresh process and replaying its warmup requests
- `rest`: TF Serving's REST endpoints with timeouts and retries
- `client`: `ServingBackend`, the predictor's model interface over REST

Nothing is imported here, so `import reseg.serving` stays cheap.
"""
