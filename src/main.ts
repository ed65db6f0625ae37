#!/usr/bin/env node
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { ActorSystem } from './actor/index.js'

/**
 * The troupe CLI. Until the stack (config, stores, providers, HTTP) lands, `start` brings up an
 * actor system on the worker pool, prints its tree, and shuts down cleanly on a signal.
 */
async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      workers: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  })
  if (values.help) {
    process.stdout.write('usage: troupe [--config stack.yaml] [--workers N]\n')
    return 0
  }
  const log = pino({ level: process.env['TROUPE_LOG_LEVEL'] ?? 'info', name: 'troupe' })
  if (values.config !== undefined) {
    log.warn({ config: values.config, found: existsSync(values.config) }, 'stack.yaml is not loaded yet: this build runs the actor kernel only')
  }
  const workers = values.workers === undefined ? undefined : Number(values.workers)
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 0)) {
    process.stderr.write(`--workers: expected a non-negative integer, got ${values.workers}\n`)
    return 2
  }
  const system = await ActorSystem.start({ logger: log, ...(workers === undefined ? {} : { workers }) })
  const snapshot = await system.inspect()
  log.info({ threads: snapshot.threads.map(t => ({ thread: t.thread, kind: t.kind })) }, 'actor system started')
  process.stdout.write(`${JSON.stringify(snapshot, null, 2)}\n`)

  return new Promise(resolve => {
    let signals = 0
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++
      if (signals === 1) {
        log.info({ signal }, 'shutting down: draining actors')
        system.shutdown().then(
          () => {
            log.info('stopped')
            process.off('SIGINT', onSignal)
            process.off('SIGTERM', onSignal)
            resolve(0)
          },
          error => {
            log.error({ err: error }, 'shutdown failed')
            resolve(1)
          },
        )
      } else if (signals === 2) {
        log.warn({ signal }, 'still draining; send the signal once more to force exit')
      } else {
        log.error({ signal }, 'forced exit')
        process.exit(130)
      }
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}

main(process.argv.slice(2)).then(
  code => {
    process.exitCode = code
  },
  error => {
    process.stderr.write(`troupe: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
    process.exitCode = 1
  },
)
