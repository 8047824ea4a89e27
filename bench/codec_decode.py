"""`python -m bench.codec_decode`: what one Codec.decode costs, per envelope shape (microseconds).

A tiny timing script beside the suite (never pass/fail): the duplicate-key check must keep the
decode of what ledgerbus itself sends close to the plain decode, and bounded for everything else.
"""

from __future__ import annotations

import timeit

import msgspec

from ledgerbus.schemas.codec import Codec
from ledgerbus.schemas.envelope import new_request


def shapes() -> dict[str, bytes]:
    def request(docs: int) -> bytes:
        payload = {"docs": [{"url": f"https://example.org/{i}", "title": "raft consensus", "score": 0.5}
                            for i in range(docs)]}
        return msgspec.json.encode(new_request(sender="client", recipient="worker", capability="research.search",
                                               payload=payload))

    small, large = request(1), request(40)
    # Another client's encoder (spaces after separators): the same envelope, other bytes.
    foreign = small.replace(b'",', b'", ').replace(b'":', b'": ')
    return {"own, 1 doc": small, "own, 40 docs": large, "foreign spacing, 1 doc": foreign}


def main() -> None:
    codec = Codec()
    for name, data in shapes().items():
        n = 20000 if len(data) < 1000 else 2000
        best = min(timeit.repeat(lambda: codec.decode(data), number=n, repeat=7)) / n * 1e6
        print(f"{name:24s} {len(data):6d} B  {best:8.2f} us")


if __name__ == "__main__":
    main()
