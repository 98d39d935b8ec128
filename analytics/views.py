"""Dashboard pages of analytics: figures and charts of a period, insights, and statements to
request, follow live and download. Same selectors and services as the API."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone

from analytics import insights, selectors
from analytics.api.exports import ExportRequestSerializer, file_response, own_exports
from analytics.api.figures import TimeseriesQuerySerializer
from analytics.services import export_create
from quickpe.dashboard import signed_in, throttled
from quickpe.errors import QuickPeError
from quickpe.throttling import ExportRateThrottle

CHART_HEIGHT = 120  # px of the tallest bar


def _bars(buckets) -> list[dict]:
    """Spending per bucket, scaled for the inline SVG chart (the table beside it has the
    exact figures)."""
    top = max((bucket.sent + bucket.withdrawn for bucket in buckets), default=0) or 1
    width = max(4, 600 // max(len(buckets), 1))
    bars = []
    for index, bucket in enumerate(buckets):
        spent = bucket.sent + bucket.withdrawn
        height = round(spent * CHART_HEIGHT / top)
        bars.append(
            {
                "bucket": bucket,
                "spent": spent,
                "height": height,
                "y": CHART_HEIGHT - height,
                "x": index * width,
                "width": width - 2,
            }
        )
    return bars


@signed_in
def analytics_page(request):
    query = TimeseriesQuerySerializer(data=request.GET)
    if not query.is_valid():
        query = TimeseriesQuerySerializer(data={})
        query.is_valid(raise_exception=True)
        messages.error(request, "That period is not valid; showing the last 30 days.")
    start, end = query.validated_data["start"], query.validated_data["end"]
    interval = query.validated_data.get("interval", "day")
    user = request.user
    buckets = selectors.timeseries_for(user=user, start=start, end=end, interval=interval)
    context = {
        "summary": selectors.summary_for(user=user, start=start, end=end),
        "bars": _bars(buckets),
        "chart_width": max(4, 600 // max(len(buckets), 1)) * len(buckets),
        "chart_height": CHART_HEIGHT,
        "categories": selectors.categories_for(user=user, start=start, end=end),
        "insights": insights.insights_for(user=user, now=timezone.now()),
        "interval": interval,
    }
    return render(request, "dashboard/analytics.html", context)


@signed_in
def exports_page(request):
    errors: dict[str, str] = {}
    if request.method == "POST":
        filled = {name: value for name, value in request.POST.items() if value.strip()}
        form = ExportRequestSerializer(data={**filled, "kind": "statement"})
        wait = throttled(request, ExportRateThrottle)
        if wait is not None:
            errors = {"": f"You asked for many statements; try again in {int(wait) + 1} s."}
        elif form.is_valid():
            export = export_create(
                user=request.user,
                kind=form.validated_data["kind"],
                format=form.validated_data["format"],
                period_start=form.validated_data["start"],
                period_end=form.validated_data["end"],
                request=request,
            )
            messages.success(request, f"Statement #{export.pk} requested; it is being built.")
            return redirect("/app/exports")
        else:
            errors = {
                field: " ".join(map(str, problems)) for field, problems in form.errors.items()
            }
    context = {
        "exports": own_exports(request.user).order_by("-created_at")[:20],
        "errors": errors,
        "values": request.POST,
    }
    return render(request, "dashboard/exports.html", context, status=400 if errors else 200)


@signed_in
def export_download(request, pk: int):
    export = own_exports(request.user).select_related("user").filter(pk=pk).first()
    if export is None:
        raise Http404("No such export.")
    try:
        return file_response(export)
    except QuickPeError as error:
        messages.error(request, error.detail)
        return redirect("/app/exports")
