"""Signs a BYOC job request through a remote signer and builds its
`Livepeer` header with Livepeer's own client (livepeer_gateway.byoc), as
tests/livepeer_sdk.rs asks.

usage: py_byoc_header.py SIGNER_URL JOB_ID CAPABILITY REQUEST_JSON PARAMETERS_JSON TIMEOUT
Prints one JSON line {"signed": <the signer's answer>, "header": <base64>},
or exits non-zero with the SDK's error on stderr.
"""
import json
import sys

from livepeer_gateway.byoc import ByocJobRequest, _build_livepeer_header, _sign_byoc_job


def main() -> None:
    signer, job_id, capability, request, parameters, timeout = sys.argv[1:7]
    req = ByocJobRequest(
        capability=capability,
        payload=json.loads(request),
        timeout_seconds=int(timeout),
        job_id=job_id,
        parameters=json.loads(parameters),
    )
    # The strings exactly as the SDK puts them in the header.
    request_json = json.dumps(req.payload)
    parameters_json = json.dumps(req.parameters) if req.parameters else ""
    signed = _sign_byoc_job(
        signer_url=signer,
        signer_headers={"Authorization": "Bearer sdk"},
        job_id=job_id,
        capability=capability,
        request_json=request_json,
        parameters_json=parameters_json,
        timeout_seconds=req.timeout_seconds,
    )
    header = _build_livepeer_header(
        req, job_id, sender=signed.get("sender", ""), sig=signed.get("signature", "")
    )
    print(json.dumps({"signed": signed, "header": header}))


if __name__ == "__main__":
    main()
