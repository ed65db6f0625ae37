/**
 * The benchmark harness: every troupe figure is measured beside its raw baseline in the same
 * process (one process per benchmark: see run.ts), in interleaved rounds (baseline, troupe,
 * baseline, troupe, …) so that drift on a shared machine hits both alike. Each figure is the
 * median over rounds, with the spread. The ratio is the median of the rounds' own ratios, each
 * taken between figures measured moments apart: on a machine whose speed drifts by half between
 * rounds, a ratio of the two medians would pair a fast round's figure with a slow round's.
 */
export type Unit = 'us' | 'msg/s' | 'ops/s' | 'req/s' | 'ms' | 'requests' | 'bytes'

export interface BenchResult {
  readonly name: string
  readonly unit: Unit
  readonly value: number
  readonly baseline: string
  readonly baseline_value: number
  /** The median over rounds of each round's value / baseline. */
  readonly ratio: number
  /** Whether a larger ratio is better (throughput) or a smaller one (latency). */
  readonly better: 'higher' | 'lower'
  readonly target?: string
  /** min and max of the per-round figures: troupe, baseline, and their ratio. */
  readonly spread: { readonly value: [number, number]; readonly baseline: [number, number]; readonly ratio: [number, number] }
  readonly rounds: number
}

export interface Measured {
  readonly value: number
  readonly baseline: number
}

export interface Subject {
  readonly name: string
  readonly unit: Unit
  readonly baseline: string
  readonly better: 'higher' | 'lower'
  readonly target?: string
}

/** Runs `round` `rounds` times after `warmup` unrecorded ones and summarises each figure. */
export async function measure(subjects: readonly Subject[], rounds: number, warmup: number, round: () => Promise<Measured[]>): Promise<BenchResult[]> {
  for (let i = 0; i < warmup; i++) await round()
  const samples: Measured[][] = subjects.map(() => [])
  for (let i = 0; i < rounds; i++) {
    const figures = await round()
    figures.forEach((figure, at) => samples[at]!.push(figure))
  }
  return subjects.map((subject, at) => {
    const values = samples[at]!.map(s => s.value)
    const baselines = samples[at]!.map(s => s.baseline)
    const ratios = samples[at]!.map(s => s.value / s.baseline)
    const value = median(values)
    const baselineValue = median(baselines)
    return {
      name: subject.name,
      unit: subject.unit,
      value: round3(value),
      baseline: subject.baseline,
      baseline_value: round3(baselineValue),
      ratio: round3(median(ratios)),
      better: subject.better,
      ...(subject.target === undefined ? {} : { target: subject.target }),
      spread: { value: [round3(Math.min(...values)), round3(Math.max(...values))], baseline: [round3(Math.min(...baselines)), round3(Math.max(...baselines))], ratio: [round3(Math.min(...ratios)), round3(Math.max(...ratios))] },
      rounds,
    }
  })
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

function round3(x: number): number {
  return Number(x.toPrecision(4))
}

/** Elapsed microseconds since `start` (from process.hrtime.bigint()). */
export function elapsedUs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1000
}

export function formatTable(results: readonly BenchResult[]): string {
  const rows = results.map(r => [
    r.name,
    `${fmt(r.value)} ${r.unit}`,
    `[${fmt(r.spread.value[0])}–${fmt(r.spread.value[1])}]`,
    r.baseline,
    `${fmt(r.baseline_value)} ${r.unit}`,
    `${r.ratio} [${r.spread.ratio[0]}–${r.spread.ratio[1]}]`,
    r.target ?? '',
  ])
  const header = ['benchmark', 'troupe (median)', 'spread', 'baseline', 'baseline (median)', 'ratio [spread]', 'target']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(row => row[i]!.length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  return [line(header), line(widths.map(w => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

function fmt(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`
  if (x >= 1e4) return `${(x / 1e3).toFixed(1)}k`
  return x >= 100 ? x.toFixed(0) : x.toFixed(2)
}
