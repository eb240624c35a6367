import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { MetricsOptions } from '@aws-lambda-powertools/metrics/types';
import { TELEMETRY, type TelemetryService } from '../../core/config/names.ts';
import type { MetricsPort } from '../../core/metrics.ts';
import { METRIC_UNITS } from '../../core/metrics.ts';
import type { EngineDeps } from '../../core/usecases/deps.ts';

/**
 * The Powertools Logger and Metrics of one process (a Lambda, the sandbox, the local engine) and
 * the core ports over them. In AWS both write to stdout, where CloudWatch Logs reads the JSON lines
 * and turns the EMF ones into metrics; locally the EMF lines go to a function (the engine's log).
 */

/** Where EMF lines go instead of stdout (local mode: the engine's log, so the demo's output stays clean). */
export type EmfSink = (line: string) => void;

export interface Telemetry {
  logger: Logger;
  metrics: Metrics;
}

export function createTelemetry(service: TelemetryService, opts: { emf?: EmfSink } = {}): Telemetry {
  // The level comes from POWERTOOLS_LOG_LEVEL (the stack sets TELEMETRY.logLevel), INFO without it.
  const logger = new Logger({ serviceName: TELEMETRY.services[service] });
  // Metrics' own diagnostics ("no application metrics to publish" on every quiet invocation) are debug noise.
  const diagnostics = { debug: logger.debug.bind(logger), info: logger.debug.bind(logger), warn: logger.debug.bind(logger), error: logger.error.bind(logger) };
  const options: MetricsOptions = { namespace: TELEMETRY.namespace, serviceName: TELEMETRY.services[service], logger: diagnostics };
  return { logger, metrics: opts.emf ? new RoutedMetrics(options, opts.emf) : new Metrics(options) };
}

/** Powertools Metrics whose EMF lines go to a function; Powertools writes them with `console.log` on its own Console. */
class RoutedMetrics extends Metrics {
  constructor(
    private readonly options: MetricsOptions,
    private readonly sink: EmfSink,
  ) {
    super(options);
    // `console` is Powertools' private output; replacing it is the one way to redirect EMF lines.
    (this as unknown as { console: { log: EmfSink } }).console = { log: sink };
  }

  override singleMetric(): Metrics {
    const single = new RoutedMetrics({ ...this.options, singleMetric: true }, this.sink);
    return single;
  }
}

/**
 * core's MetricsPort on Powertools: a plain count joins the invocation's EMF blob (flushed by
 * `logMetrics` or `publishStoredMetrics`); one with dimensions is its own blob, written at once,
 * so dimensions of different metrics never mix.
 */
export function metricsPort(metrics: Metrics): MetricsPort {
  return {
    emit: (name, value, dimensions) => {
      const unit = METRIC_UNITS[name] === 'Milliseconds' ? MetricUnit.Milliseconds : MetricUnit.Count;
      const defined = Object.entries(dimensions ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string' && e[1] !== '');
      if (defined.length === 0) return metrics.addMetric(name, unit, value);
      const single = metrics.singleMetric();
      for (const [k, v] of defined) single.addDimension(k, v);
      single.addMetric(name, unit, value);
    },
  };
}

/**
 * core's log port on the Logger: an Error under `error` is logged at ERROR (Powertools formats it
 * with name, message and stack); a step or deployment failure named by `errorName` at WARN.
 */
export function logPort(logger: Logger): EngineDeps['log'] {
  return (message, details = {}) => {
    if (details.error instanceof Error) logger.error(message, details);
    else if (typeof details.error === 'string' || typeof details.errorName === 'string') logger.warn(message, details);
    else logger.info(message, details);
  };
}
