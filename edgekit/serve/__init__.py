"""Serve an edgekit bundle over HTTP and gRPC with KServe's model server.

`pip install "edgekit[serve]"` (no TensorFlow needed), then:

    edgekit-serve --bundle=bundle --model_name=digits --http_port=8080

V1 (TensorFlow Serving's REST API) at /v1/models/digits:predict, V2 (the open
inference protocol) at /v2/models/digits/infer and over gRPC. See docs/serving.md.

Layout: `signature` checks requests against the bundle's inputs (numpy only), `pool`
holds the interpreters, `model` is the KServe model class, `kserve_server` adds the
listen address, the body limit and TF Serving's status route to KServe's server, and
`server` checks the options and runs it all. KServe is imported only by `server.serve`
(and by `model` / `kserve_server` themselves), so importing this package is cheap.
"""

from edgekit.serve.server import ServeOptions, build, serve

__all__ = ["ServeOptions", "build", "serve"]
