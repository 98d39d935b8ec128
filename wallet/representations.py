"""The public JSON shapes of money objects, as plain functions of the models.

One source for the REST responses (``wallet.api.serializers`` renders with these) and the
WebSocket event payloads (built by services, which may not import the API layer).
"""

from quickpe.formats import timestamp
from quickpe.money import format_paise


def party(user) -> dict | None:
    if user is None:
        return None
    return {"quickpe_id": user.quickpe_id, "name": user.get_full_name()}


def transaction_data(entry) -> dict:
    return {
        "id": entry.pk,
        "reference": entry.reference,
        "kind": entry.kind,
        "direction": entry.direction,
        "amount": format_paise(entry.amount),
        "balance_after": format_paise(entry.balance_after),
        "category": entry.category,
        "description": entry.description,
        "counterparty": party(entry.counterparty),
        "transfer_id": entry.transfer_id,
        "created_at": timestamp(entry.created_at),
    }


def transfer_data(transfer) -> dict:
    return {
        "id": transfer.pk,
        "reference": transfer.reference,
        "sender": party(transfer.sender),
        "recipient": party(transfer.recipient),
        "amount": format_paise(transfer.amount),
        "note": transfer.note,
        "category": transfer.category,
        "status": transfer.status,
        "created_at": timestamp(transfer.created_at),
    }


def money_request_data(money_request, *, now) -> dict:
    status = money_request.current_status(now)
    resolved_at = money_request.resolved_at
    if resolved_at is None and status == "expired":
        resolved_at = money_request.expires_at  # expired on access, before the job wrote it
    return {
        "id": money_request.pk,
        "requester": party(money_request.requester),
        "payer": party(money_request.payer),
        "amount": format_paise(money_request.amount),
        "note": money_request.note,
        "status": status,
        "transfer_id": money_request.transfer_id,
        "created_at": timestamp(money_request.created_at),
        "expires_at": timestamp(money_request.expires_at),
        "resolved_at": timestamp(resolved_at) if resolved_at else None,
    }
