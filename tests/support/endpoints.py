"""Every gRPC method and HTTP route a running sidecar serves, found on its servers (so services
other components register there are included without this file knowing them)."""

from __future__ import annotations


def grpc_methods(sidecar) -> list[str]:
    methods = []
    for handler in sidecar.grpc._handlers:
        service = getattr(handler, "_name", None)
        for method in getattr(handler, "_method_handlers", {}):
            methods.append(method if method.startswith("/") else f"/{service}/{method}")
    return sorted(methods)


def http_routes(app) -> list[tuple[str, str]]:
    if hasattr(app, "routes") and callable(app.routes):  # the admin port's server (transport/admin_http.py)
        return [(method, path) for method, path in app.routes() if method != "HEAD"]
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method != "HEAD":
            routes.add((route.method, path))
    return sorted(routes)
