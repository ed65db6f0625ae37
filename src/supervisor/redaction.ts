import type { DestinationStream } from 'pino'

/** Fields that hold secrets, wherever they appear in a logged object (up to three levels down). */
export const SECRET_PATHS: readonly string[] = ['api_key', 'password', 'authorization', 'workflows_context_secret'].flatMap(key => [key, `*.${key}`, `*.*.${key}`, `*.*.*.${key}`])

/**
 * The last step of every log line on its way out, on the main thread: the system logger's own
 * lines and the worker threads' (which arrive already serialised, so pino's `redact` on the
 * main logger never saw them). Each line whose JSON holds a redacted path is rewritten with
 * the value replaced; a line that holds none is written as it came. The paths can be replaced
 * while the process runs (`logging.redact` on a reload).
 *
 * Paths are pino's dot form: `a.b.c`, with `*` for any key at that level (`*.api_key`). A line
 * pays one JSON.parse only when a key of some path occurs in its text.
 */
export class RedactingDestination implements DestinationStream {
  readonly #out: DestinationStream
  readonly #censor: string
  #paths: string[][] = []
  /** The last key of every path: a line whose text holds none of them cannot match. */
  #keys: string[] = []

  constructor(out: DestinationStream, paths: readonly string[], censor = '[redacted]') {
    this.#out = out
    this.#censor = censor
    this.setPaths(paths)
  }

  setPaths(paths: readonly string[]): void {
    this.#paths = paths.map(path => path.split('.'))
    // A path of wildcards only names no key: then every line is looked at.
    this.#keys = [...new Set(this.#paths.map(path => path.filter(part => part !== '*').at(-1)).map(key => (key === undefined ? '' : `"${key}"`)))]
  }

  get paths(): string[] {
    return this.#paths.map(path => path.join('.'))
  }

  write(line: string): void {
    this.#out.write(this.#keys.some(key => line.includes(key)) ? this.#redact(line) : line)
  }

  #redact(line: string): string {
    let record: unknown
    try {
      record = JSON.parse(line)
    } catch {
      return line // not one JSON line: nothing of ours to redact
    }
    let changed = false
    for (const path of this.#paths) changed = censor(record, path, this.#censor) || changed
    return changed ? `${JSON.stringify(record)}\n` : line
  }
}

/** Replaces the value at `path` (with `*` matching any key) in `value`; true if it replaced any. */
function censor(value: unknown, path: readonly string[], replacement: string): boolean {
  if (typeof value !== 'object' || value === null || path.length === 0) return false
  const [head, ...rest] = path as [string, ...string[]]
  const record = value as Record<string, unknown>
  const keys = head === '*' ? Object.keys(record) : Object.hasOwn(record, head) ? [head] : []
  let changed = false
  for (const key of keys) {
    if (rest.length === 0) {
      record[key] = replacement
      changed = true
    } else changed = censor(record[key], rest, replacement) || changed
  }
  return changed
}
