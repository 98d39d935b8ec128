from django.urls import path

from wallet.api import auth, money, requests

urlpatterns = [
    path("auth/signup", auth.SignupView.as_view(), name="signup"),
    path("auth/signin", auth.SigninView.as_view(), name="signin"),
    path("auth/refresh", auth.RefreshView.as_view(), name="refresh"),
    path("auth/signout", auth.SignoutView.as_view(), name="signout"),
    path("auth/verify-email", auth.EmailVerifyView.as_view(), name="email-verify"),
    path("me", auth.MeView.as_view(), name="me"),
    path(
        "me/email/verification",
        auth.EmailVerificationView.as_view(),
        name="email-verification",
    ),
    path("me/password", auth.PasswordView.as_view(), name="password"),
    path("me/sessions", auth.SessionListView.as_view(), name="session-list"),
    path("me/sessions/<int:pk>", auth.SessionDetailView.as_view(), name="session-detail"),
    path("users", auth.UserSearchView.as_view(), name="user-search"),
    path("wallet", money.WalletView.as_view(), name="wallet"),
    path("wallet/deposits", money.DepositView.as_view(), name="deposit"),
    path("wallet/withdrawals", money.WithdrawalView.as_view(), name="withdrawal"),
    path("transfers", money.TransferCreateView.as_view(), name="transfer-create"),
    path("transfers/<int:pk>", money.TransferDetailView.as_view(), name="transfer-detail"),
    path("transactions", money.TransactionListView.as_view(), name="transaction-list"),
    path("transactions/<int:pk>", money.TransactionDetailView.as_view(), name="transaction-detail"),
    path("money-requests", requests.MoneyRequestListCreateView.as_view(), name="request-list"),
    path(
        "money-requests/<int:pk>", requests.MoneyRequestDetailView.as_view(), name="request-detail"
    ),
    path("money-requests/<int:pk>/pay", requests.MoneyRequestPayView.as_view(), name="request-pay"),
    path(
        "money-requests/<int:pk>/decline",
        requests.MoneyRequestDeclineView.as_view(),
        name="request-decline",
    ),
    path(
        "money-requests/<int:pk>/cancel",
        requests.MoneyRequestCancelView.as_view(),
        name="request-cancel",
    ),
]
