"""Wasm VM sharing by vm_id, as Envoy: plugins with the same vm_id, code and vm configuration share one VM per
worker (one root context each, module globals in common), across filters and listeners; another vm_id gets
its own VM. Seen through the shared_vm_filter module (a module-global request counter each plugin writes into
a header of its own) and wasm.envoy.wasm.runtime.v8.{created,active}."""

from helpers import CountingBackend, bootstrap, http_listener, request, static_cluster
from test_wasm import WASM_TYPE, module


def counting_filter(header, vm_id):
    return {"name": f"wasm-{header}", "typed_config": {"@type": WASM_TYPE, "config": {
        "name": f"plugin-{header}",
        "root_id": header,
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": header},
        "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(module("shared_vm_filter"))}}}}}}


def listener(name, filters):
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    return http_listener(name, routes, http_filters=filters + [{"name": "envoy.filters.http.router"}])


def seen(backend, path):
    return backend.headers[path]


def test_same_vm_id_shares_one_vm_per_worker_across_filters_and_listeners(skiff_factory):
    backend = CountingBackend()
    try:
        config = bootstrap([
            listener("two_filters", [counting_filter("x-a", "shared"), counting_filter("x-b", "shared")]),
            listener("third", [counting_filter("x-c", "shared")]),
        ], [static_cluster("backend", backend.port)])
        skiff = skiff_factory(config, concurrency=1)
        port = skiff.listener_port("two_filters")
        status, _, _ = request(port, "/one")
        assert status == 200
        # Both plugins bumped the same module global: one VM, two root contexts.
        assert seen(backend, "/one")["x-a"] == "1"
        assert seen(backend, "/one")["x-b"] == "2"
        assert len(seen(backend, "/one")["x-b-roots"].split(",")) == 2  # B starts after A ran
        request(port, "/two")
        assert (seen(backend, "/two")["x-a"], seen(backend, "/two")["x-b"]) == ("3", "4")
        # The other listener's plugin lives in the same VM too.
        request(skiff.listener_port("third"), "/three")
        assert seen(backend, "/three")["x-c"] == "5"
        stats = skiff.stats()
        assert stats["wasm.envoy.wasm.runtime.v8.active"] == 1, stats
        # Config-time VMs (one per plugin, discarded) plus the one worker VM.
        assert stats["wasm.envoy.wasm.runtime.v8.created"] == 4, stats
    finally:
        backend.close()


def test_different_vm_ids_get_separate_vms(skiff_factory):
    backend = CountingBackend()
    try:
        config = bootstrap([listener("apart", [counting_filter("x-a", "one"), counting_filter("x-b", "two")])],
                           [static_cluster("backend", backend.port)])
        skiff = skiff_factory(config, concurrency=1)
        port = skiff.listener_port()
        for path in ("/one", "/two"):
            status, _, _ = request(port, path)
            assert status == 200
        assert (seen(backend, "/one")["x-a"], seen(backend, "/one")["x-b"]) == ("1", "1")
        assert (seen(backend, "/two")["x-a"], seen(backend, "/two")["x-b"]) == ("2", "2")
        assert seen(backend, "/one")["x-a-roots"].count(",") == 0
        assert skiff.stats()["wasm.envoy.wasm.runtime.v8.active"] == 2
    finally:
        backend.close()
