"""Prints the message fields of Livepeer's lp_rpc.proto as the SDK compiled
it: {"net.Message": {"field": [number, type, label]}}, nested messages
included, for tests/livepeer_sdk.rs to compare with ours."""
import json

from livepeer_gateway import lp_rpc_pb2

out = {}


def walk(m):
    out[m.full_name] = {
        f.name: [f.number, f.type, 3 if f.is_repeated else 1] for f in m.fields
    }
    for n in m.nested_types:
        walk(n)


for m in lp_rpc_pb2.DESCRIPTOR.message_types_by_name.values():
    walk(m)
svc = lp_rpc_pb2.DESCRIPTOR.services_by_name["Orchestrator"]
out["service"] = {
    m.name: [m.input_type.full_name, m.output_type.full_name] for m in svc.methods
}
print(json.dumps(out))
