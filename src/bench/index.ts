/**
 * The benchmarks behind `tributary bench`: runners (they talk to the servers and never
 * print) and pure parts (statistics, result files, formatting, the SVG chart, the
 * README section).
 */
export { runDrain, defaultCliPath, type DrainOptions, type DrainRun } from './drain.js';
export { runCeiling, type CeilingOptions, type CeilingRun } from './ceiling.js';
export { runRate, defaultRateBatch, type RateOptions, type RateRun } from './rate.js';
export { runSweep, sweepCharts, sweepChartName, DEFAULT_SWEEP_WORKERS, DEFAULT_SWEEP_BATCH_SIZES, type SweepOptions } from './sweep.js';
export { measureProduce, sampleEvents } from './load.js';
export { collectMachine } from './machine.js';
export { openWorkspace, benchConfig, configEnv, type BenchWorkspace } from './workspace.js';
export { percentile, summarizeLatencies, ratePerSec, type LatencySummary } from './stats.js';
export { renderBarChart, niceStep, escapeXml, type BarChartOptions, type ChartSeries, PALETTE } from './svg.js';
export { summarizeCpuProfile, formatProfileSummary, type CpuProfile, type ProfileSummary } from './profile.js';
export { copyTextField, copyTextLine } from './copy.js';
export * from './format.js';
export * from './result.js';
export { benchReadmeSection, machineLabel, type ResultFile } from './report.js';
