from django.urls import path

from analytics.api import exports, figures

urlpatterns = [
    # Figures computed from the ledger at request time.
    path("analytics/summary", figures.SummaryView.as_view(), name="analytics-summary"),
    path("analytics/timeseries", figures.TimeseriesView.as_view(), name="analytics-timeseries"),
    path("analytics/categories", figures.CategoriesView.as_view(), name="analytics-categories"),
    path("analytics/insights", figures.InsightsView.as_view(), name="analytics-insights"),
    path("analytics/kpi", figures.KpiView.as_view(), name="analytics-kpi"),
    # Exports built by Celery.
    path("exports", exports.ExportListCreateView.as_view(), name="export-list"),
    path("exports/<int:pk>", exports.ExportDetailView.as_view(), name="export-detail"),
    path("exports/<int:pk>/download", exports.ExportDownloadView.as_view(), name="export-download"),
]
