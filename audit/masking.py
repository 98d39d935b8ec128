"""PII masking for audit data: what an auditor needs to follow events, not the PII itself."""

from quickpe.formats import mask_email

_EMAIL_KEYS = {"email", "recipient_email", "payer_email"}
_SECRET_KEYS = {"password", "old_password", "new_password", "token", "refresh", "access"}


def mask_data(data: dict) -> dict:
    masked = {}
    for key, value in data.items():
        if key in _SECRET_KEYS:
            continue
        if isinstance(value, dict):
            masked[key] = mask_data(value)
        elif key in _EMAIL_KEYS and isinstance(value, str):
            masked[key] = mask_email(value)
        else:
            masked[key] = value
    return masked
