import { pino, type DestinationStream, type Logger } from 'pino'
import { RedactingDestination, SECRET_PATHS } from './redaction.js'

/** How the CLI writes its log lines: pino's JSON lines, or pino-pretty's lines for a person. */
export type LogFormat = 'json' | 'pretty'

/** The environment variable that chooses the format, over the terminal's guess. */
export const LOG_FORMAT_ENV = 'TROUPE_LOG_FORMAT'

/**
 * The format `TROUPE_LOG_FORMAT` names, else pretty when stdout is a terminal (a person reads
 * it) and JSON otherwise (a collector does); undefined when the variable names neither.
 */
export function logFormatOf(env: NodeJS.ProcessEnv, stdoutIsTerminal: boolean): LogFormat | undefined {
  const named = env[LOG_FORMAT_ENV]
  if (named === undefined || named === '') return stdoutIsTerminal ? 'pretty' : 'json'
  return named === 'json' || named === 'pretty' ? named : undefined
}

export interface CliLoggerOptions {
  readonly level: string
  readonly format: LogFormat
  /** `logging.redact`, over SECRET_PATHS. */
  readonly redact: readonly string[]
  /** Where lines go; stdout, written synchronously, unless a test captures them. */
  readonly out?: DestinationStream
}

/**
 * The CLI's logger, and the redaction its reloads replace the paths of. pino's own redaction
 * (compiled, fast) takes the built-in secrets; the RedactingDestination takes the configured
 * paths, live, and the worker threads' lines, which reach it already serialised. Only after it
 * are lines pretty-printed, so both formats censor alike. pino-pretty is loaded only when used.
 */
export async function createCliLogger(options: CliLoggerOptions): Promise<{ log: Logger; redaction: RedactingDestination }> {
  const out = options.out ?? pino.destination({ dest: 1, sync: true })
  const formatted = options.format === 'json' ? out : await prettyOnto(out)
  const redaction = new RedactingDestination(formatted, [...SECRET_PATHS, ...options.redact])
  const log = pino({ level: options.level, name: 'troupe', redact: { paths: [...SECRET_PATHS], censor: '[redacted]' } }, redaction)
  return { log, redaction }
}

async function prettyOnto(out: DestinationStream): Promise<DestinationStream> {
  const { prettyFactory } = (await import('pino-pretty')).default
  // Called per line, in the writer's turn: no stream between, so nothing is lost at process.exit.
  const prettify = prettyFactory({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
  return { write: (line: string) => out.write(prettify(line)) }
}
