from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """Django's admin with QuickPe's site (``quickpe.admin.QuickPeAdminSite``) as ``admin.site``:
    every admin page on India's clock."""

    default_site = "quickpe.admin.QuickPeAdminSite"
