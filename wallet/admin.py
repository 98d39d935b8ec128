"""Support staff's view of accounts and money. Ledger and transfers are read-only: money only
moves through the services, and every change an admin makes is audited."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from quickpe.admin import ReadOnlyAdmin
from quickpe.money import format_inr
from wallet.models import (
    DeviceSession,
    IdempotencyKey,
    LedgerEntry,
    MoneyRequest,
    Transfer,
    User,
    Wallet,
)
from wallet.services.money import wallet_set_status
from wallet.services.users import user_admin_update, user_create


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["-date_joined"]
    list_display = ["quickpe_id", "email", "first_name", "last_name", "is_staff", "is_active"]
    search_fields = ["quickpe_id", "email", "first_name", "last_name"]
    readonly_fields = ["quickpe_id", "date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["quickpe_id", "email", "password"]}),
        ("Profile", {"fields": ["first_name", "last_name"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["date_joined", "last_login"]}),
    ]
    add_fieldsets = [
        (None, {"fields": ["email", "first_name", "last_name", "password1", "password2"]}),
    ]

    def save_model(self, request, obj, form, change):
        """New accounts go through the sign-up service (wallet, QuickPe ID, audit); edits are
        saved and audited in the same transaction (the admin wraps each request in one)."""
        if not change:
            created = user_create(
                email=obj.email,
                password=form.cleaned_data.get("password1"),
                first_name=obj.first_name,
                last_name=obj.last_name,
                request=request,
            )
            obj.pk = created.pk
            obj.refresh_from_db()
            return
        super().save_model(request, obj, form, change)
        if form.changed_data:
            user_admin_update(
                actor=request.user, user=obj, changed=form.changed_data, request=request
            )


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ["user", "balance_inr", "status", "updated_at"]
    list_filter = ["status"]
    search_fields = ["user__quickpe_id", "user__email"]
    readonly_fields = [
        "user",
        "balance",
        "limits_day",
        "deposited_on_day",
        "outgoing_on_day",
        "created_at",
        "updated_at",
        "status",
    ]
    actions = ["freeze", "unfreeze"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="balance")
    def balance_inr(self, wallet):
        return format_inr(wallet.balance)

    def _set_status(self, request, queryset, status):
        for wallet in queryset.select_related("user"):
            wallet_set_status(
                wallet=wallet,
                status=status,
                actor=request.user,
                request=request,
                reason="admin action",
            )
        messages.success(request, f"{queryset.count()} wallet(s) now {status}.")

    @admin.action(description="Freeze selected wallets")
    def freeze(self, request, queryset):
        self._set_status(request, queryset, Wallet.Status.FROZEN)

    @admin.action(description="Unfreeze selected wallets")
    def unfreeze(self, request, queryset):
        self._set_status(request, queryset, Wallet.Status.ACTIVE)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "reference",
        "wallet",
        "kind",
        "direction",
        "amount",
        "balance_after",
        "created_at",
    ]
    list_filter = ["kind", "direction", "category"]
    search_fields = ["reference", "wallet__user__quickpe_id"]
    list_select_related = ["wallet__user"]


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ["reference", "sender", "recipient", "amount", "status", "created_at"]
    search_fields = ["reference", "sender__quickpe_id", "recipient__quickpe_id"]
    list_select_related = ["sender", "recipient"]


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["user", "key", "response_status", "created_at"]


@admin.register(MoneyRequest)
class MoneyRequestAdmin(ReadOnlyAdmin):
    list_display = ["pk", "requester", "payer", "amount_inr", "status", "created_at", "expires_at"]
    list_filter = ["status"]
    list_select_related = ["requester", "payer"]
    search_fields = ["requester__quickpe_id", "payer__quickpe_id", "requester__email"]
    date_hierarchy = "created_at"

    @admin.display(description="amount")
    def amount_inr(self, money_request):
        return format_inr(money_request.amount)


@admin.register(DeviceSession)
class DeviceSessionAdmin(ReadOnlyAdmin):
    list_display = ["user", "device", "ip", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["user"]
    search_fields = ["user__quickpe_id", "user__email"]
    exclude = ["refresh_jti", "device_key"]
