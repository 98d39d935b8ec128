"""How an audit entry is hashed, and how the chains are verified.

hash = SHA-256(prev_hash || canonical JSON of the entry), where the canonical JSON has sorted
keys, no spaces and UTF-8 text, and covers every column but the hashes themselves (``seq``
included, so moving an entry is as visible as editing it).
"""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

GENESIS_HASH = "0" * 64
# Heads exist for chains 0..MAX_CHAINS-1 (migration 0003); QUICKPE_AUDIT_CHAINS picks how many
# of them writers use.
MAX_CHAINS = 1024


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_around_seq(
    *,
    chain: int,
    actor_id: int | None,
    action: str,
    entity_type: str,
    entity_id: str,
    data: dict,
    ip: str,
    user_agent: str,
    created_at: datetime,
) -> tuple[str, str]:
    """The entry's canonical JSON cut where its ``seq`` goes: ``before + str(seq) + after``.

    ``audit_append`` lets PostgreSQL put the seq in and hash, in the statement that locks the
    chain head and hands the seq out. The keys sort as action, actor, chain, created_at, data,
    entity_id, entity_type, ip, then seq, then user_agent."""
    before = _dumps(
        {
            "action": action,
            "actor": actor_id,
            "chain": chain,
            "created_at": created_at.isoformat(),
            "data": data,
            "entity_id": entity_id,
            "entity_type": entity_type,
            "ip": ip,
        }
    )
    return before[:-1] + ',"seq":', ',"user_agent":' + _dumps(user_agent) + "}"


def entry_hash(*, prev_hash: str, seq: int, **fields) -> str:
    before, after = canonical_around_seq(**fields)
    return hashlib.sha256(f"{prev_hash}{before}{seq}{after}".encode()).hexdigest()


# The columns verification reads, in order; also the keyword names of entry_hash().
VERIFY_COLUMNS = (
    "seq",
    "chain",
    "actor_id",
    "action",
    "entity_type",
    "entity_id",
    "data",
    "ip",
    "user_agent",
    "created_at",
    "prev_hash",
    "hash",
)


@dataclass
class VerifyResult:
    valid: bool = True
    checked: int = 0
    head_seq: int | None = None
    head_hash: str | None = None
    first_invalid_seq: int | None = None
    reason: str = ""
    _last: dict = field(default_factory=dict, repr=False)

    def fail(self, seq: int | None, reason: str) -> "VerifyResult":
        self.valid, self.first_invalid_seq, self.reason = False, seq, reason
        return self


def verify_entries(
    rows: Iterable[tuple], heads: dict[int, tuple[int | None, str]], *, chains: int
) -> VerifyResult:
    """Walk entries in ``seq`` order (an iterator: memory stays bounded by the chain count).

    Every entry must point at the previous entry of its chain and hash to what it says; at the
    end every chain must finish where its head row says, which catches deletions at the tail.
    """
    result = VerifyResult()
    for row in rows:
        entry = dict(zip(VERIFY_COLUMNS, row, strict=True))
        seq, chain = entry["seq"], entry["chain"]
        expected_prev = result._last.get(chain, (None, GENESIS_HASH))[1]
        if entry["prev_hash"] != expected_prev:
            return result.fail(
                seq,
                f"entry #{seq} does not follow the previous entry of chain {chain}: an entry "
                "before it was deleted, inserted or moved",
            )
        fields = {k: v for k, v in entry.items() if k != "hash"}
        if entry_hash(**fields) != entry["hash"]:
            return result.fail(
                seq, f"entry #{seq} was altered: its hash does not match its content"
            )
        result._last[chain] = (seq, entry["hash"])
        result.checked += 1
        result.head_seq, result.head_hash = seq, entry["hash"]

    for chain, (head_seq, head_hash) in sorted(heads.items()):
        last_seq, last_hash = result._last.get(chain, (None, GENESIS_HASH))
        if (last_seq, last_hash) != (head_seq, head_hash):
            return result.fail(
                head_seq if head_seq is not None else last_seq,
                f"chain {chain} ends at entry #{last_seq} but its head records #{head_seq}: "
                "entries were deleted from its end or appended outside QuickPe",
            )
    missing = sorted(set(range(chains)) - heads.keys())
    if missing:
        return result.fail(None, f"chain head(s) {missing[:5]} are missing: rows were deleted")
    return result
