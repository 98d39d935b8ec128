"""The tamper-evident audit log: hash-chained, append-only entries.

Entries are spread over ``QUICKPE_AUDIT_CHAINS`` independent chains (by actor) so writers of
different chains never wait for one another; each chain's head row is the lock that orders its
entries. See README "Audit chain" for why, and ``audit.chain`` for the hashing.
"""

import pgtrigger
from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    seq = models.BigAutoField(primary_key=True)
    chain = models.PositiveSmallIntegerField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=64)
    entity_type = models.CharField(max_length=64)
    entity_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict)
    ip = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        verbose_name_plural = "audit entries"
        permissions = [
            ("verify_chain", "Can verify the audit chain"),
            ("export_log", "Can export the whole audit log"),
        ]
        indexes = [
            models.Index(fields=["actor", "-seq"], name="audit_entry_actor_recent"),
        ]
        triggers = [
            pgtrigger.Protect(
                name="audit_auditentry_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self):
        return f"#{self.seq} {self.action}"


class AuditChainHead(models.Model):
    """The last entry of one chain: locked FOR UPDATE to append, checked by verification."""

    chain = models.PositiveSmallIntegerField(primary_key=True)
    last_seq = models.BigIntegerField(null=True)
    last_hash = models.CharField(max_length=64)

    def __str__(self):
        return f"chain {self.chain} at #{self.last_seq}"
