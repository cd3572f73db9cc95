"""Trace calls with OpenTelemetry and print the spans and metrics, offline (mock_response).

Needs the OpenTelemetry SDK: pip install 'fixedmodel[otel]' opentelemetry-sdk
"""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from fixedmodel import bind_acompletion, responses, with_retries, with_tracing


async def main() -> None:
    resource = Resource.create({"service.name": "tracing-example"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[metrics])

    async with bind_acompletion("openai/gpt-4o-mini", mock_response="Traced.") as bound:
        chat = with_tracing(
            with_retries(bound), tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        await chat(messages=[{"role": "user", "content": "Hi"}], temperature=0.2)
        stream = await chat(messages=[{"role": "user", "content": "Hi"}], stream=True)
        print("".join([piece async for piece in responses.atext_deltas(stream)]))

    data = metrics.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                # Histograms (durations, token counts) report how many values they hold.
                counts = [
                    point.count
                    for point in metric.data.data_points
                    if isinstance(point, HistogramDataPoint)
                ]
                print(metric.name, counts)
    tracer_provider.shutdown()
    meter_provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
