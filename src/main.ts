#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { ActorSystem } from './actor/index.js'
import { ConfigError, loadConfigFile, type LoadedConfig } from './config/index.js'
import { createCliLogger, LOG_FORMAT_ENV, logFormatOf } from './supervisor/log-format.js'
import { requestReload } from './supervisor/reload-client.js'
import { inspectServer } from './supervisor/inspect-client.js'
import { serveReloads } from './supervisor/triggers.js'
import { checkStackWithWorkflows, startStack, type RunningStack } from './supervisor/stack.js'
import { newApiKey } from './server/auth.js'

/**
 * The troupe CLI.
 *   troupe [start] --config stack.yaml   serve the stack: store actors, providers, routing, workflows, HTTP
 *   troupe validate --config stack.yaml  print every config error with its path (workflow modules
 *                                        are imported to check them); exit 1 if any
 * With --strict, start and validate (and every reload after) refuse what troupe would otherwise
 * skip with a warning: parts of a llama-stack config it does not serve, keys it does not know.
 *   troupe reload --config stack.yaml    ask the running server (found by the file's server address,
 *   troupe reload --url http://host:port or named by --url) to re-read its config; exit 1 if refused
 * A running server also reloads on SIGHUP and when its config file's content changes.
 *   troupe inspect --config stack.yaml   the running stack's health, config generation, threads and
 *   troupe inspect --url URL [--json]    actor tree, printed for a terminal; exit 1 if unhealthy
 * reload and inspect send --token (or TROUPE_TOKEN) as a Bearer token, for a server with server.auth.
 *   troupe keys new [--principal NAME]   print a new API key, and the server.auth api_keys entry
 *                                        (its sha256 hash) that admits it; the key is shown once
 * Without --config, start runs a bare actor system (no stack) and prints its tree.
 */
async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      url: { type: 'string' },
      watch: { type: 'boolean', default: true },
      strict: { type: 'boolean', default: false },
      workers: { type: 'string' },
      principal: { type: 'string' },
      token: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    allowNegative: true,
  })
  const command = positionals[0] ?? 'start'
  if (values.help || !['start', 'validate', 'reload', 'inspect', 'keys'].includes(command) || (command === 'keys' && positionals[1] !== 'new')) {
    process.stdout.write(
      'usage: troupe [start] [--config stack.yaml] [--workers N] [--no-watch] [--strict]\n       troupe validate --config stack.yaml [--strict]\n       troupe reload (--config stack.yaml | --url URL) [--token T]\n       troupe inspect (--config stack.yaml | --url URL) [--token T] [--json]\n       troupe keys new [--principal NAME]\n',
    )
    return values.help ? 0 : 2
  }
  if (command === 'keys') {
    const { key, hash } = newApiKey()
    const principal = values.principal ?? 'user'
    process.stdout.write(`key: ${key}\n# under server.auth.provider_config (type: api_keys), keys:\n- { hash: '${hash}', principal: ${JSON.stringify(principal)} }\n`)
    return 0
  }
  const token = values.token ?? (process.env['TROUPE_TOKEN'] || undefined)
  if (command === 'reload') return requestReload({ config: values.config, url: values.url, token })
  if (command === 'inspect') return inspectServer({ config: values.config, url: values.url, token, json: values.json })
  let loaded: LoadedConfig | undefined
  if (values.config !== undefined) {
    try {
      loaded = await loadConfigFile(values.config, process.env, { strict: values.strict === true })
      await checkStackWithWorkflows(loaded)
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      for (const issue of error.issues) process.stderr.write(`${issue.path}: ${issue.message}\n`)
      process.stderr.write(`${error.source}: ${error.issues.length} error${error.issues.length === 1 ? '' : 's'}\n`)
      return 1
    }
    for (const warning of loaded.warnings) process.stderr.write(`warning: ${warning.path}: ${warning.message}\n`)
  }
  if (command === 'validate') {
    if (loaded === undefined) {
      process.stderr.write('validate needs --config FILE\n')
      return 2
    }
    process.stdout.write(`${summarise(loaded)}\n`)
    return 0
  }
  const format = logFormatOf(process.env, process.stdout.isTTY === true)
  if (format === undefined) {
    process.stderr.write(`${LOG_FORMAT_ENV}: expected json or pretty, got ${JSON.stringify(process.env[LOG_FORMAT_ENV])}\n`)
    return 2
  }
  const { log, redaction } = await createCliLogger({
    level: process.env['TROUPE_LOG_LEVEL'] ?? loaded?.config.logging.level ?? 'info',
    format,
    redact: loaded?.config.logging.redact ?? [],
  })
  if (loaded !== undefined) log.info({ config: loaded.source, summary: summarise(loaded) }, 'config loaded')
  const workers = values.workers === undefined ? loaded?.config.troupe.workers : Number(values.workers)
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 0)) {
    process.stderr.write(`--workers: expected a non-negative integer, got ${String(values.workers)}\n`)
    return 2
  }
  const system = await ActorSystem.start({
    logger: log,
    askTimeoutMs: loaded?.config.troupe.ask_timeout_ms ?? 30_000,
    ...(workers === undefined ? {} : { workers }),
  })
  let stop = (): Promise<void> => system.shutdown()
  let stack: RunningStack | undefined
  if (loaded !== undefined) {
    try {
      stack = await startStack(system, loaded, log, { redaction, ...(values.workers === undefined ? {} : { workers: Number(values.workers) }) })
      stop = stack.stop
    } catch (error) {
      log.error({ err: error }, 'the stack could not start')
      await system.shutdown()
      return 1
    }
  } else {
    process.stdout.write(`${JSON.stringify(await system.inspect(), null, 2)}\n`)
  }

  const reloads = stack === undefined ? undefined : serveReloads(stack, log, values.watch !== false)

  return new Promise(resolve => {
    let signals = 0
    let exitCode = 0
    const shutDown = (why: Record<string, unknown>): void => {
      log.info(why, 'shutting down: refusing new work, draining HTTP, runs and actors')
      reloads?.close()
      stop().then(
        () => {
          log.info('stopped')
          process.off('SIGINT', onSignal)
          process.off('SIGTERM', onSignal)
          resolve(exitCode)
        },
        error => {
          log.error({ err: error }, 'shutdown failed')
          resolve(1)
        },
      )
    }
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++
      if (signals === 1) shutDown({ signal })
      else if (signals === 2) log.warn({ signal }, 'still draining; the drain goes on to its deadline. Send the signal once more to force exit')
      else {
        log.error({ signal }, 'forced exit')
        process.exit(130)
      }
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    // A subtree that gave up is an orderly shutdown that ends non-zero.
    void stack?.supervisor.failed.then(error => {
      if (signals > 0) return
      signals++
      exitCode = 1
      log.error({ err: error }, 'a subtree gave up restarting; stopping the stack')
      shutDown({ reason: 'gave_up' })
    })
  })
}


function summarise({ config, source, warnings }: LoadedConfig): string {
  const providers = Object.values(config.providers).reduce((n, list) => n + list.length, 0)
  const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`
  const stores = Object.values(config.storage.stores).filter(Boolean).length
  const warned = warnings.length === 0 ? '' : `, ${count(warnings.length, 'warning')}`
  return `${source}: valid (${count(providers, 'provider')}, ${count(Object.keys(config.storage.backends).length, 'backend')}, ${count(stores, 'store')}, ${count(config.registered_resources.models.length, 'model')}, ${count(config.workflows.length, 'workflow')})${warned}`
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
